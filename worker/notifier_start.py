"""Starting the notifier (workflows/notifier.py): by `debflow dev`, beside the expiry schedule."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from models.notify_payloads import NotifierInput
from worker.settings import Settings
from workflows.notifier import NOTIFIER_ID, NotifierWorkflow


def notifier_input(settings: Settings) -> NotifierInput:
    """No cursor: the first poll starts from what is stored now (nothing older is sent)."""
    return NotifierInput(
        poll_interval_s=settings.notify_poll_interval_s,
        retry_max_interval_s=settings.webhook_retry_max_interval_s,
        delivery_timeout_s=settings.webhook_timeout_s,
    )


async def ensure_notifier(
    client: Client, settings: Settings, *, workflow_id: str = NOTIFIER_ID
) -> WorkflowHandle[NotifierWorkflow, None]:
    """Start the notifier, or leave the running one (and its cursor) as it is."""
    return await client.start_workflow(
        NotifierWorkflow.run,
        notifier_input(settings),
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
