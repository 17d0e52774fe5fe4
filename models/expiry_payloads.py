"""Payloads of the Expiry workflow and its activities, and the dry-run plan `debflow expire` prints."""

from __future__ import annotations

import datetime as dt
import enum

from pydantic import BaseModel, Field


class RetentionPolicy(BaseModel):
    """The retention knobs of one expiry run, copied from Settings when the schedule is written."""

    qa_results_keep: int = Field(default=5, ge=1)
    removed_item_full_history_days: int = Field(default=7, ge=0)
    removed_item_metadata_days: int = Field(default=30, ge=0)
    batch_size: int = Field(default=1000, ge=1, le=1000)
    lock_timeout_ms: int = Field(default=500, ge=1)
    statement_timeout_s: float = Field(default=30, gt=0)
    orphan_blob_grace_s: float = Field(default=6 * 3600, ge=0)
    debci_job_days: int = Field(default=90, ge=1)  # finished debci jobs are kept this long


class ExpiryPhase(enum.StrEnum):
    WORKFLOWS = "workflows"  # record which workflows run now
    QA_RESULTS = "qa-results"  # soft-remove QA results beyond the N newest per key
    ITEMS = "items"  # delete removed collection items past both retention periods
    ARTIFACTS = "artifacts"  # delete expired artifacts nothing retains, their files and blobs
    DEBCI_JOBS = "debci-jobs"  # delete finished debci jobs past their period, and who requested them
    BLOBS = "blobs"  # collect blobs no file row names
    DONE = "done"


class ExpiryResult(BaseModel):
    running_workflows: int = 0
    qa_results_removed: int = 0
    items_deleted: int = 0
    artifacts_deleted: int = 0
    artifacts_kept: int = 0
    files_deleted: int = 0
    blobs_removed: int = 0
    debci_jobs_deleted: int = 0
    batches: int = 0


class ExpiryInput(BaseModel):
    """Start an expiry run; `phase`, `cursor` and `done` carry a long run over continue-as-new."""

    policy: RetentionPolicy = Field(default_factory=RetentionPolicy)
    now: dt.datetime | None = Field(default=None, description="the run's clock; default: its start")
    phase: ExpiryPhase = ExpiryPhase.WORKFLOWS
    cursor: list[str] = Field(default_factory=list)
    done: ExpiryResult = Field(default_factory=ExpiryResult)


class ExpiryBatchInput(BaseModel):
    """One batch of one phase: at most `policy.batch_size` rows examined after `cursor`."""

    now: dt.datetime
    policy: RetentionPolicy
    cursor: list[str] = Field(default_factory=list)
    run_id: str = ""  # recorded as removed_by_workflow


class ExpiryBatchResult(BaseModel):
    changed: int = 0  # rows deleted or soft-removed
    kept: int = 0  # candidates examined and kept (retained, locked by a writer, referenced meanwhile)
    files_deleted: int = 0
    blobs_removed: int = 0
    cursor: list[str] = Field(default_factory=list)
    done: bool = False


class SyncWorkflowsInput(BaseModel):
    policy: RetentionPolicy


class SyncWorkflowsResult(BaseModel):
    running: int
    added: int
    removed: int


class BlobSweepInput(BaseModel):
    prefixes: list[str]  # two-hex-digit directories of the store
    grace_s: float
    clean_tmp: bool = False
    policy: RetentionPolicy


class BlobSweepResult(BaseModel):
    files_deleted: int = 0
    blobs_removed: int = 0
    tmp_removed: int = 0


class PlannedRow(BaseModel):
    """One row of the dry-run plan: what it is and, when kept, why."""

    kind: str
    id: int
    what: str
    why: str = ""


class ExpiryPlan(BaseModel):
    """What an expiry run at `now` would do; nothing is locked or written to compute it."""

    now: dt.datetime
    history_rows_beyond_keep: int = 0
    qa_results_to_remove: int = 0
    qa_results_kept_live: int = 0
    items_to_delete: int = 0
    items_metadata_only: int = 0
    artifacts_expired: int = 0
    artifacts_to_delete: int = 0
    artifacts_kept: int = 0
    kept_reasons: dict[str, int] = Field(default_factory=dict)
    running_workflows_recorded: int = 0
    remove: list[PlannedRow] = Field(default_factory=list)
    keep: list[PlannedRow] = Field(default_factory=list)
