"""`debflow status`: what an operator reads to tell whether there is an operational problem."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from activities.services.status import DatabaseHealth, FailureRate, database_health
from models.campaign import BatchProgress, CampaignProgress
from worker.task_queues import QueueStatus, debflow_queues, queue_status
from workflows.campaign import CampaignWorkflow
from workflows.campaign_batch import CampaignBatchWorkflow

if TYPE_CHECKING:  # the engine is made by the composition root (worker/context.py)
    from sqlalchemy import Engine


class CampaignStatus(BaseModel):
    workflow_id: str
    progress: CampaignProgress | None
    # What its running batches wait for: another campaign's reference runs (BatchProgress.waiting_text).
    waiting: list[str] = Field(default_factory=list)


class Status(BaseModel):
    temporal_reachable: bool
    temporal_error: str = ""
    queues: list[QueueStatus] = Field(default_factory=list)
    campaigns: list[CampaignStatus] = Field(default_factory=list)
    last_hour: FailureRate = Field(default_factory=FailureRate)
    database: DatabaseHealth | None = None
    database_error: str = ""


async def running_campaigns(client: Client, limit: int = 20) -> list[CampaignStatus]:
    found = []
    query = 'DebflowKind="campaign" AND ExecutionStatus="Running"'
    async for execution in client.list_workflows(query, limit=limit):
        handle = client.get_workflow_handle_for(CampaignWorkflow.run, execution.id)
        try:
            progress: CampaignProgress | None = await handle.query(CampaignWorkflow.progress)
        except RPCError:
            progress = None  # no worker has picked it up yet
        waiting = await batches_waiting(client, progress.running_batches if progress else [])
        found.append(CampaignStatus(workflow_id=execution.id, progress=progress, waiting=waiting))
    return found


async def batches_waiting(client: Client, batch_ids: list[str]) -> list[str]:
    """'BATCH: waiting for reference … (run by …)' for each running batch that waits on another's run."""

    async def progress(batch_id: str) -> BatchProgress | None:
        try:
            found: BatchProgress = await client.get_workflow_handle_for(
                CampaignBatchWorkflow.run, batch_id
            ).query(CampaignBatchWorkflow.progress)
        except RPCError:
            return None
        return found

    found = await asyncio.gather(*(progress(b) for b in batch_ids))
    return [f"{b}: {p.waiting_text()}" for b, p in zip(batch_ids, found, strict=True) if p and p.waiting_for]


async def collect_status(
    client: Client | None,
    engine: Engine | None,
    control: str,
    architectures: list[str],
    temporal_error: str = "",
) -> Status:
    """The control queue always; a capability queue when a worker polls it or tasks wait in it."""
    status = Status(temporal_reachable=client is not None, temporal_error=temporal_error)
    if client is not None:
        queues = debflow_queues(control, architectures)
        described = await asyncio.gather(*(queue_status(client, name, kinds) for name, kinds in queues))
        for (name, _), found in zip(queues, described, strict=True):
            if name == control or any(q.pollers or q.backlog for q in found):
                status.queues += found
        status.campaigns = await running_campaigns(client)
    if engine is not None:
        try:
            status.database, status.last_hour = database_health(engine)
        except Exception as e:  # an operator's view reports a broken database, it does not crash on it
            status.database_error = f"{type(e).__name__}: {e}".splitlines()[0]
    return status


def print_status(status: Status, console: Console) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    temporal = (
        "[green]reachable[/]" if status.temporal_reachable else f"[red]unreachable[/] {status.temporal_error}"
    )
    console.print(f"debflow status at {now}: Temporal {temporal}")
    if status.queues:
        table = Table(title="task queues", show_edge=False)
        for column in ("queue", "kind", "pollers", "backlog", "oldest (s)"):
            table.add_column(column)
        for q in status.queues:
            pollers = "[red]0[/]" if not q.pollers else f"{len(q.pollers)} ({', '.join(q.pollers[:3])})"
            table.add_row(q.name, q.kind, pollers, str(q.backlog), f"{q.backlog_age_s:.0f}")
        console.print(table)
    for campaign in status.campaigns:
        p = campaign.progress
        if p is None:
            detail = "waiting for a worker"
        else:
            done = sum(p.counts.values())
            detail = (
                f"{p.batches_done}/{p.batches} batches, {done}/{p.planned_targets} targets, "
                f"{p.counts.get('REGRESSION', 0)} regressions"
            )
        console.print(f"campaign {campaign.workflow_id}: {detail}")
        for line in campaign.waiting:
            console.print(f"  {line}")
    rate = status.last_hour
    console.print(
        f"last hour: {rate.tasks} tasks, {rate.package_failures} package failures, "
        f"{rate.infrastructure_errors} infrastructure errors "
        f"({rate.infrastructure_error_rate:.1%} of tasks)"
    )
    if status.database is not None:
        d = status.database
        console.print(
            f"database: {d.connections} connections, {d.lock_waits} lock waits, {d.deadlocks} deadlocks; "
            f"since the last reset {d.inserts} inserts, {d.updates} updates, {d.deletes} deletes, "
            f"{d.dead_tuples} dead tuples"
        )
    elif status.database_error:
        console.print(f"database: [red]unreachable[/] {status.database_error}")
