"""Pydantic payloads that cross Temporal: one input and one result model per workflow and activity."""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field


class Check(enum.StrEnum):
    BUILD = "build"
    LINTIAN = "lintian"
    AUTOPKGTEST = "autopkgtest"


class TaskStatus(enum.StrEnum):
    """Where a task ended (Debusine's vocabulary)."""

    COMPLETED = "completed"
    SKIPPED = "skipped"
    ERROR = "error"


class TaskResult(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    SKIPPED = "skipped"


# --- the upload pipeline workflow ---------------------------------------------------------------


class UploadPipelineInput(BaseModel):
    """Start an upload pipeline; documented in README as the JSON for `temporal workflow start`."""

    upload_artifact_id: int = Field(description="debian:source-package artifact made by `debflow submit`")
    suite: str = "bookworm"
    architectures: list[str] = Field(default_factory=lambda: ["amd64"])
    checks: list[Check] = Field(default_factory=lambda: list(Check))


class TaskReport(BaseModel):
    name: str
    architecture: str
    status: TaskStatus
    result: TaskResult
    artifact_ids: list[int] = Field(default_factory=list)
    duration_s: float = 0.0
    summary: str = ""


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

    total: int
    finished: int
    running: list[str]
    tasks: list[TaskReport]


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


class LintianResult(BaseModel):
    result: TaskResult
    artifact_id: int
    counts: dict[str, int]
    duration_s: float
    summary: str


class AutopkgtestResult(BaseModel):
    result: TaskResult
    exit_code: int
    artifact_id: int
    tests: dict[str, str]
    duration_s: float
    summary: str
