"""The expiry schedule: written from Settings by `debflow dev` and `debflow expire --schedule`."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy

from models.expiry_payloads import ExpiryInput, ExpiryResult, RetentionPolicy
from worker.settings import Settings
from workflows.expiry import ExpiryWorkflow

EXPIRY_SCHEDULE_ID = "debflow-expiry"
MANUAL_RUN_ID = "debflow-expiry-now"


def retention_policy(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        qa_results_keep=settings.qa_results_keep,
        removed_item_full_history_days=settings.removed_item_full_history_days,
        removed_item_metadata_days=settings.removed_item_metadata_days,
        batch_size=settings.expiry_batch_size,
        lock_timeout_ms=settings.expiry_lock_timeout_ms,
        statement_timeout_s=settings.expiry_statement_timeout_s,
        orphan_blob_grace_s=settings.orphan_blob_grace_s,
        debci_job_days=settings.debci_job_keep_days,
    )


def expiry_schedule(settings: Settings) -> Schedule:
    """Every `expiry_interval_s`, one Expiry run; a run still going when the next is due is not doubled."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ExpiryWorkflow.run,
            ExpiryInput(policy=retention_policy(settings)),
            id=EXPIRY_SCHEDULE_ID,  # Temporal appends the scheduled time
            task_queue=settings.task_queue,
            execution_timeout=timedelta(hours=12),
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.expiry_interval_s))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="debflow retention: see docs/retention.md"),
    )


async def ensure_expiry_schedule(
    client: Client, settings: Settings, *, schedule_id: str = EXPIRY_SCHEDULE_ID
) -> ScheduleHandle:
    """Create the schedule, or bring an existing one up to date with `settings` (paused stays paused)."""
    schedule = expiry_schedule(settings)
    try:
        return await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = current.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await handle.update(update)
        return handle


async def run_expiry_now(
    client: Client, settings: Settings, *, workflow_id: str = MANUAL_RUN_ID, now: dt.datetime | None = None
) -> ExpiryResult:
    """Run expiry now and wait for it; joins a manual run that is already going."""
    return await client.execute_workflow(
        ExpiryWorkflow.run,
        ExpiryInput(policy=retention_policy(settings), now=now),
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
