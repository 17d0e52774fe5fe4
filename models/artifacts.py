"""The JSON data of each artifact category, validated by pydantic before it is stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.vocabulary import ArtifactCategory


class ArtifactData(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourcePackageData(ArtifactData):
    """debian:source-package — a .dsc and the files it lists."""

    name: str
    version: str
    format: str
    architecture: list[str]
    binaries: list[str]
    testsuite: list[str] = Field(default_factory=list)
    dsc_filename: str
    dsc_fields: dict[str, str]


class UploadData(ArtifactData):
    """debian:upload — the .changes of a build and the files it lists."""

    source: str
    version: str
    architecture: list[str]
    changes_filename: str
    changes_fields: dict[str, str]


class BinaryPackageData(ArtifactData):
    """debian:binary-package — one .deb."""

    package: str
    version: str
    architecture: str
    source: str
    source_version: str
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    filename: str


class PackageBuildLogData(ArtifactData):
    """debian:package-build-log — the output of one build."""

    source: str
    version: str
    architecture: str
    filename: str
    exit_code: int
    result: str
    duration_s: float | None = None
    environment_artifact_id: int | None = None  # the debian:system-tarball it was built in
    environment_s: float = 0.0  # making or waiting for it: not in duration_s


class LintianTag(BaseModel):
    severity: str
    package: str
    package_type: str
    tag: str
    note: str = ""


class LintianData(ArtifactData):
    """debian:lintian — tags lintian emitted on a source and its binaries."""

    source: str
    version: str
    architecture: str
    result: str
    exit_code: int
    lintian_version: str
    counts: dict[str, int]
    tags: list[LintianTag]
    duration_s: float | None = None


class AutopkgtestTestResult(BaseModel):
    status: str  # PASS, FAIL, SKIP, FLAKY, BROKEN as in autopkgtest's summary
    details: str = ""
    # A superficial test passing ("PASS (superficial)") shows the package installs, not that it works:
    # autopkgtest exits 8 when no other test passed.
    superficial: bool = False


class AutopkgtestData(ArtifactData):
    """debian:autopkgtest — per-test results of one autopkgtest run."""

    source: str
    version: str
    architecture: str
    suite: str
    result: str
    exit_code: int
    virt_server: str
    tests: dict[str, AutopkgtestTestResult]
    duration_s: float | None = None
    environment_s: float = 0.0  # making or waiting for the test environment: not in duration_s
    # A private debci job's log: shown to its requester only, through the API (docs/debci-api.md).
    private: bool = False


class SystemTarballData(ArtifactData):
    """debian:system-tarball — a build and test environment made by mmdebstrap (the unshare executor)."""

    suite: str
    architecture: str
    variant: str
    mirror: str
    components: list[str]
    includes: list[str] = Field(default_factory=list)
    filename: str
    tool: str  # e.g. "mmdebstrap 1.3.5"


class BinaryDebdiff(BaseModel):
    """One binary package of an upload against its namesake in the suite."""

    package: str
    status: str  # changed, unchanged, new (not in the suite), dropped (not built by the upload)
    files_added: list[str] = Field(default_factory=list)
    files_removed: list[str] = Field(default_factory=list)
    control_changes: list[str] = Field(default_factory=list)  # wdiff lines: "Version: [-1.0-] {+1.1+}"


class DebdiffData(ArtifactData):
    """debian:debdiff — an upload against the suite's version of its source: source diff summary,
    binary debdiff per package, and the lintian tags new in the upload and resolved by it."""

    source: str
    version: str
    architecture: str
    suite: str
    suite_version: str | None  # None: the suite has no version of this source
    files_changed: int = 0
    lines_added: int = 0
    lines_removed: int = 0
    binaries: list[BinaryDebdiff] = Field(default_factory=list)
    new_tags: list[LintianTag] = Field(default_factory=list)
    resolved_tags: list[LintianTag] = Field(default_factory=list)
    suite_lintian_artifact_id: int | None = None  # the suite version's debian:lintian, kept and reused
    result: str
    duration_s: float | None = None


class BlhcData(ArtifactData):
    """debian:blhc — blhc's tags on one build log (missing hardening flags, hidden compiler flags)."""

    source: str
    version: str
    architecture: str
    result: str
    exit_code: int
    tags: list[str] = Field(default_factory=list)  # "W-dpkg-buildflags-missing|CFLAGS 1 (of 1) missing|"
    duration_s: float | None = None


class PiupartsData(ArtifactData):
    """debian:piuparts — install, remove, purge (and upgrade from the suite's version) in a testbed."""

    source: str
    version: str
    architecture: str
    suite: str
    result: str
    exit_code: int
    upgrade_from: str | None = None  # the suite's version the upgrade test started from
    environment_artifact_id: int | None = None
    summary: str = ""
    duration_s: float | None = None


CATEGORIES: dict[str, type[ArtifactData]] = {
    ArtifactCategory.SOURCE_PACKAGE: SourcePackageData,
    ArtifactCategory.UPLOAD: UploadData,
    ArtifactCategory.BINARY_PACKAGE: BinaryPackageData,
    ArtifactCategory.PACKAGE_BUILD_LOG: PackageBuildLogData,
    ArtifactCategory.LINTIAN: LintianData,
    ArtifactCategory.AUTOPKGTEST: AutopkgtestData,
    ArtifactCategory.SYSTEM_TARBALL: SystemTarballData,
    ArtifactCategory.DEBDIFF: DebdiffData,
    ArtifactCategory.BLHC: BlhcData,
    ArtifactCategory.PIUPARTS: PiupartsData,
}


def validate_artifact_data(category: str, data: dict[str, Any] | ArtifactData) -> dict[str, Any]:
    """The JSON to store for an artifact of `category`; raises ValueError for anything invalid."""
    model = CATEGORIES.get(category)
    if model is None:
        raise ValueError(f"unknown artifact category {category!r}")
    if isinstance(data, ArtifactData):
        if not isinstance(data, model):
            raise ValueError(f"{type(data).__name__} is not the data of {category}")
        return data.model_dump(mode="json")
    return model.model_validate(data).model_dump(mode="json")
