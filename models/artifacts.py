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


CATEGORIES: dict[str, type[ArtifactData]] = {
    ArtifactCategory.SOURCE_PACKAGE: SourcePackageData,
    ArtifactCategory.UPLOAD: UploadData,
    ArtifactCategory.BINARY_PACKAGE: BinaryPackageData,
    ArtifactCategory.PACKAGE_BUILD_LOG: PackageBuildLogData,
    ArtifactCategory.LINTIAN: LintianData,
    ArtifactCategory.AUTOPKGTEST: AutopkgtestData,
    ArtifactCategory.SYSTEM_TARBALL: SystemTarballData,
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
