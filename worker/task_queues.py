"""What the task queues hold and who polls them, read from Temporal: `debflow status` and the results
site's status page both show it."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from workflows import queues


class QueueStatus(BaseModel):
    name: str
    kind: str  # workflow or activity
    pollers: list[str]
    backlog: int
    backlog_age_s: float


KINDS = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}


def debflow_queues(control: str, architectures: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Every queue debflow may use (docs/operations.md "Worker pools"), with the task kinds each carries."""
    found: list[tuple[str, tuple[str, ...]]] = [(control, ("workflow", "activity"))]
    found.append((queues.lintian_queue(control), ("activity",)))
    for arch in architectures:
        found.append((queues.build_queue(control, arch), ("activity",)))
        found.append((queues.test_queue(control, arch), ("activity",)))
    return found


async def queue_status(client: Client, name: str, kinds: tuple[str, ...] = tuple(KINDS)) -> list[QueueStatus]:
    found = []
    for kind in kinds:
        queue_type = KINDS[kind]
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=name),
                task_queue_type=queue_type,
                report_stats=True,
            )
        )
        stats = response.stats
        found.append(
            QueueStatus(
                name=name,
                kind=kind,
                pollers=sorted({p.identity for p in response.pollers}),
                backlog=stats.approximate_backlog_count,
                backlog_age_s=stats.approximate_backlog_age.ToTimedelta().total_seconds(),
            )
        )
    return found
