"""Pydantic payloads that cross Temporal: one input and one result model per workflow and activity."""

from __future__ import annotations

import datetime as dt
import enum

from pydantic import BaseModel, Field


class Check(enum.StrEnum):
    BUILD = "build"
    LINTIAN = "lintian"
    AUTOPKGTEST = "autopkgtest"


class TaskStatus(enum.StrEnum):
    """Where a task is (Debusine's vocabulary)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    ERROR = "error"


class TaskResult(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"


# --- the upload pipeline workflow ---------------------------------------------------------------


class TaskTimeouts(BaseModel):
    """Start-to-close timeouts per task type and the heartbeat timeout of long tasks, in seconds."""

    build_s: float = 3 * 3600
    lintian_s: float = 3600
    autopkgtest_s: float = 2 * 3600
    heartbeat_s: float = 60
    # How long a build or check waits for a worker polling its queue (docs/operations.md "Worker pools").
    queue_wait_s: float = 24 * 3600


class UploadPipelineInput(BaseModel):
    """Start an upload pipeline; documented in docs/usage.md as the JSON for `temporal workflow start`."""

    upload_artifact_id: int = Field(description="debian:source-package artifact made by `debflow submit`")
    suite: str = "bookworm"
    architectures: list[str] = Field(default_factory=lambda: ["amd64"])
    checks: list[Check] = Field(default_factory=lambda: list(Check))
    timeouts: TaskTimeouts = Field(default_factory=TaskTimeouts)
    retry_window_s: float = Field(
        default=24 * 3600, ge=0, description="how long the finished run accepts the retry_failed update"
    )


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
    accepting_retries_until: dt.datetime | None = None
    upload_artifact_id: int | None = None  # the debian:source-package the run tested


class PipelineProgress(BaseModel):
    """Answer of the `progress` query; `finished` once every task has a final state (the run may stay
    open for retry_failed)."""

    source: str = ""
    version: str = ""
    tasks: list[TaskReport] = Field(default_factory=list)
    finished: bool = False


# --- activities ---------------------------------------------------------------------------------


class DescribeUploadInput(BaseModel):
    upload_artifact_id: int


class UploadDescription(BaseModel):
    source: str
    version: str
    architecture: list[str]
    binaries: list[str]
    has_tests: bool


class BuildInput(BaseModel):
    upload_artifact_id: int
    source: str
    version: str
    suite: str
    architecture: str
    build_arch_all: bool


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

    upload_artifact_id: int
    binary_artifact_ids: list[int]
    source: str
    version: str
    suite: str
    architecture: str


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


class EstimateTimeoutsInput(BaseModel):
    """The tasks of one upload whose start-to-close timeouts task history may refine."""

    source: str
    suite: str
    architectures: list[str]
    defaults: TaskTimeouts


class TimeoutEstimates(BaseModel):
    """Per task key ("build/amd64"): the timeout to use and how it was found."""

    timeouts: dict[str, float] = Field(default_factory=dict)
    basis: dict[str, str] = Field(default_factory=dict)
