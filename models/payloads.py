"""Pydantic payloads that cross Temporal: one input and one result model per workflow and activity."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import AliasChoices, BaseModel, Field

from models.vocabulary import TaskResult, TaskStatus

__all__ = ["TaskResult", "TaskStatus"]  # their home is models/vocabulary.py; imported from here too


class Check(enum.StrEnum):
    BUILD = "build"
    LINTIAN = "lintian"
    AUTOPKGTEST = "autopkgtest"
    # Opt-in (docs/qa-checks.md): run only when a submit names them.
    DEBDIFF = "debdiff"
    BLHC = "blhc"
    PIUPARTS = "piuparts"


# What a run does when its submit names no check.
DEFAULT_CHECKS = (Check.BUILD, Check.LINTIAN, Check.AUTOPKGTEST)
QA_CHECKS = (Check.DEBDIFF, Check.BLHC, Check.PIUPARTS)


def parse_checks(words: list[str]) -> list[Check]:
    """The checks a submit names, in order, once each; a name that is no check is one clear error
    (ValueError). Naming any check that tests a build also runs the build."""
    checks: list[Check] = []
    for word in words:
        try:
            check = Check(word.strip())
        except ValueError:
            raise ValueError(f"unknown check {word!r} (known: {', '.join(c.value for c in Check)})") from None
        if check not in checks:
            checks.append(check)
    if checks and Check.BUILD not in checks:
        checks.insert(0, Check.BUILD)
    return checks


# --- the upload pipeline workflow ---------------------------------------------------------------


class TaskTimeouts(BaseModel):
    """Start-to-close timeouts per task type and the heartbeat timeout of long tasks, in seconds: the
    workers' policy (their DEBFLOW_*_TIMEOUT settings), which `estimate_timeouts` hands to a run."""

    build_s: float = 3 * 3600
    lintian_s: float = 3600
    autopkgtest_s: float = 2 * 3600
    heartbeat_s: float = 60
    # How long a build or check waits for a worker polling its queue (docs/operations.md "Worker pools").
    queue_wait_s: float = 24 * 3600


def _source_artifact_id(description: str = "the debian:source-package artifact") -> Any:
    """The source package's artifact id; inputs and histories of earlier runs call it upload_artifact_id."""
    return Field(
        validation_alias=AliasChoices("source_artifact_id", "upload_artifact_id"), description=description
    )


class UploadPipelineInput(BaseModel):
    """Start an upload pipeline; documented in docs/usage.md as the JSON for `temporal workflow start`."""

    source_artifact_id: int = _source_artifact_id("debian:source-package artifact made by `debflow submit`")
    suite: str = "bookworm"
    architectures: list[str] = Field(default_factory=lambda: ["amd64"])
    # The tasks to run: the build too, hence not `checks` (the name earlier inputs use).
    tasks: list[Check] = Field(
        default_factory=lambda: list(DEFAULT_CHECKS), validation_alias=AliasChoices("tasks", "checks")
    )
    # Runs that take the workers' timeouts (every run started since they do) ignore these two; they stay
    # for the inputs of earlier runs, whose histories must replay.
    timeouts: TaskTimeouts = Field(default_factory=TaskTimeouts)
    retry_window_s: float = Field(
        default=24 * 3600, ge=0, description="ignored: runs end when their tasks have (`debflow retry`)"
    )
    # Set by `debflow retry`: this run re-runs what failed in run `retry_of` of the same workflow id,
    # whose report is `previous`; its successful tasks are reused, not run again.
    retry_of: str | None = None
    previous: UploadReport | None = None

    @property
    def upload_artifact_id(self) -> int:
        """The old name of `source_artifact_id`."""
        return self.source_artifact_id


FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.SKIPPED, TaskStatus.ERROR})


class TaskAttempt(BaseModel):
    """One run of a task: the first one, or a re-run asked for with retry_failed."""

    number: int
    status: TaskStatus
    result: TaskResult | None = None
    artifact_ids: list[int] = Field(default_factory=list)
    duration_s: float = 0.0
    summary: str = ""
    tries: int | None = None  # activity attempts Temporal made (retries after infrastructure faults)
    reused: bool = False  # outputs an interrupted try had stored were reused, not made again


class TaskReport(BaseModel):
    name: str
    architecture: str
    status: TaskStatus
    result: TaskResult | None = None
    artifact_ids: list[int] = Field(default_factory=list)
    duration_s: float = 0.0
    summary: str = ""
    timeout_s: float | None = None  # start-to-close timeout of its last run
    attempts: list[TaskAttempt] = Field(default_factory=list)  # every finished run, oldest first

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class UploadReport(BaseModel):
    workflow_id: str
    source: str
    version: str
    suite: str
    architectures: list[str]
    result: TaskResult
    tasks: list[TaskReport]
    retry_rounds: int = 0
    accepting_retries_until: dt.datetime | None = None  # runs that kept a retry window only
    # The debian:source-package the run tested.
    source_artifact_id: int | None = Field(
        default=None, validation_alias=AliasChoices("source_artifact_id", "upload_artifact_id")
    )
    retry_of: str | None = None  # the run (id) of the same workflow id this one retried
    # Architecture → its last successful build: a retry in a new run tests these again, not rebuilding.
    builds: dict[str, BuildResult] = Field(default_factory=dict)

    @property
    def upload_artifact_id(self) -> int | None:
        """The old name of `source_artifact_id`."""
        return self.source_artifact_id


class PipelineProgress(BaseModel):
    """Answer of the `progress` query; `finished` once every task has a final state (a run started
    before runs ended with their tasks may stay open for retry_failed)."""

    source: str = ""
    version: str = ""
    tasks: list[TaskReport] = Field(default_factory=list)
    finished: bool = False


# --- activities ---------------------------------------------------------------------------------


class DescribeUploadInput(BaseModel):
    source_artifact_id: int = _source_artifact_id()
    # The run's architectures: the answer says which of them the source has arch-specific packages for.
    architectures: list[str] = Field(default_factory=list)

    @property
    def upload_artifact_id(self) -> int:
        return self.source_artifact_id


class UploadDescription(BaseModel):
    source: str
    version: str
    architecture: list[str]
    binaries: list[str]
    has_tests: bool
    # Of the requested architectures, those with arch-specific packages (models/architectures.py);
    # None in the histories of runs that judged it themselves.
    builds_for: list[str] | None = None


class BuildInput(BaseModel):
    source_artifact_id: int = _source_artifact_id()
    source: str
    version: str
    suite: str
    architecture: str
    build_arch_all: bool

    @property
    def upload_artifact_id(self) -> int:
        return self.source_artifact_id


class BuildResult(BaseModel):
    result: TaskResult
    exit_code: int
    log_artifact_id: int
    changes_artifact_id: int | None = None
    binary_artifact_ids: list[int] = Field(default_factory=list)
    packages: list[str] = Field(default_factory=list)
    duration_s: float
    summary: str
    tries: int = 1  # the activity attempt that returned this
    reused: bool = False  # the outputs an earlier, interrupted attempt stored
    environment_artifact_id: int | None = None  # debian:system-tarball the build ran in


class CheckInput(BaseModel):
    """Input of lintian and autopkgtest: the source and the binaries built from it."""

    source_artifact_id: int = _source_artifact_id()
    binary_artifact_ids: list[int]
    source: str
    version: str
    suite: str
    architecture: str

    @property
    def upload_artifact_id(self) -> int:
        return self.source_artifact_id


class CheckResult(BaseModel):
    result: TaskResult
    artifact_id: int
    duration_s: float
    summary: str
    tries: int = 1
    reused: bool = False


class LintianResult(CheckResult):
    counts: dict[str, int]


class AutopkgtestResult(CheckResult):
    exit_code: int
    tests: dict[str, str]


class QaCheckInput(CheckInput):
    """Input of debdiff, blhc and piuparts: a check's input and the build's log (what blhc reads)."""

    build_log_artifact_id: int


class DebdiffResult(CheckResult):
    files_changed: int = 0
    lines_added: int = 0
    lines_removed: int = 0
    new_tags: int = 0
    resolved_tags: int = 0


class BlhcResult(CheckResult):
    tags: list[str] = Field(default_factory=list)


class PiupartsResult(CheckResult):
    exit_code: int
    upgrade_tested: bool = False


class EstimateTimeoutsInput(BaseModel):
    """The tasks of one upload whose start-to-close timeouts task history may refine."""

    source: str
    suite: str
    architectures: list[str]
    # The ceilings; None: the worker's own (runs since timeouts became the workers' policy send none).
    defaults: TaskTimeouts | None = None


class TimeoutEstimates(BaseModel):
    """Per task key ("build/amd64"): the timeout to use and how it was found."""

    timeouts: dict[str, float] = Field(default_factory=dict)
    basis: dict[str, str] = Field(default_factory=dict)
    # The worker's policy (ceilings, heartbeat, queue wait); None in histories of earlier runs.
    policy: TaskTimeouts | None = None


class TaskErrorInput(BaseModel):
    """An upload task whose activity errored (tries exhausted, no worker, a timeout): its history row."""

    task_name: str
    subject: str  # the source package
    context: str  # suite/architecture
    workflow_id: str
    started_at: dt.datetime
    duration_s: float
    message: str
    tries: int | None = None


UploadPipelineInput.model_rebuild()
