"""Pydantic payloads that cross Temporal: one input and one result model per workflow and activity."""

from __future__ import annotations

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


class UploadPipelineInput(BaseModel):
    """Start an upload pipeline; documented in README as the JSON for `temporal workflow start`."""

    upload_artifact_id: int = Field(description="debian:source-package artifact made by `debflow submit`")
    suite: str = "bookworm"
    architectures: list[str] = Field(default_factory=lambda: ["amd64"])
    checks: list[Check] = Field(default_factory=lambda: list(Check))
    timeouts: TaskTimeouts = Field(default_factory=TaskTimeouts)


FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.SKIPPED, TaskStatus.ERROR})


class TaskReport(BaseModel):
    name: str
    architecture: str
    status: TaskStatus
    result: TaskResult | None = None
    artifact_ids: list[int] = Field(default_factory=list)
    duration_s: float = 0.0
    summary: str = ""

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


class PipelineProgress(BaseModel):
    """Answer of the `progress` query."""

    source: str = ""
    version: str = ""
    tasks: list[TaskReport] = Field(default_factory=list)


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


class LintianResult(CheckResult):
    counts: dict[str, int]


class AutopkgtestResult(CheckResult):
    exit_code: int
    tests: dict[str, str]
