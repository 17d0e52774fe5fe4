"""Following runs with a progress bar, and printing their reports."""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from client.api import get_progress
from client.failures import ENDED_BADLY
from models.payloads import TaskReport, TaskStatus, UploadReport

STYLE = {"success": "green", "failure": "red", "error": "bold red", "skipped": "yellow"}


async def follow(client: Client, workflow_ids: list[str], console: Console) -> None:
    """A bar per run (tasks finished of planned) until every run has finished its tasks (a finished run
    may stay open for retries)."""
    columns = (
        TextColumn("{task.fields[name]:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bars:
        ids = {wid: bars.add_task("starting", total=None, name=wid) for wid in workflow_ids}
        open_runs = set(workflow_ids)
        while open_runs:
            for wid in sorted(open_runs):
                handle = client.get_workflow_handle(wid)
                description = await handle.describe()
                if description.status != WorkflowExecutionStatus.RUNNING:
                    open_runs.discard(wid)
                if description.status in ENDED_BADLY:
                    # Its progress would need a replay; how it ended is told once the bars are gone.
                    bars.update(ids[wid], description=ENDED_BADLY[description.status])
                    continue
                try:
                    state = await get_progress(client, wid)
                except RPCError:
                    continue  # not started by a worker yet
                if state.finished:
                    open_runs.discard(wid)
                total = len(state.tasks) or None
                done = sum(t.finished for t in state.tasks)
                running = [t.summary for t in state.tasks if t.status == TaskStatus.RUNNING]
                text = (
                    ", ".join(running)
                    if running
                    else ("done" if wid not in open_runs else "waiting for a worker")
                )
                name = f"{state.source} {state.version}" if state.source else wid
                bars.update(ids[wid], total=total, completed=done, description=text, name=name)
            await asyncio.sleep(0.5)


def print_report(report: UploadReport, console: Console, url: str | None = None) -> None:
    colour = STYLE.get(report.result, "white")
    console.print(
        f"[bold]{report.source} {report.version}[/] → {report.suite}: "
        f"[{colour}]{report.result.upper()}[/]   ({report.workflow_id})"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("task", "arch", "status", "result", "seconds", "artifacts", "summary"):
        table.add_column(column)
    for task in report.tasks:
        result = str(task.result or "")
        table.add_row(
            task.name,
            task.architecture,
            str(task.status),
            f"[{STYLE.get(result, 'white')}]{result}[/]",
            f"{task.duration_s:.1f}",
            " ".join(map(str, task.artifact_ids)),
            task.summary + (f" [dim](try {task.attempts[-1].tries})[/]" if _retried(task) else ""),
        )
        # Every earlier run of the task (the first one, re-runs by retry_failed) under it.
        for attempt in task.attempts[:-1]:
            earlier = str(attempt.result or "")
            table.add_row(
                f"  attempt {attempt.number}",
                "",
                str(attempt.status),
                f"[{STYLE.get(earlier, 'white')}]{earlier}[/]",
                f"{attempt.duration_s:.1f}",
                " ".join(map(str, attempt.artifact_ids)),
                attempt.summary,
                style="dim",
            )
    console.print(table)
    if report.retry_rounds:
        console.print(
            f"  retried {report.retry_rounds} time(s) with `debflow retry`"
            + (f", last in a new run after run {report.retry_of}" if report.retry_of else "")
            + "; every attempt is listed"
        )
    if report.accepting_retries_until:
        console.print(
            f"  open for `debflow retry {report.workflow_id}` until "
            f"{report.accepting_retries_until:%Y-%m-%d %H:%M} UTC"
        )
    if url:
        console.print(f"  Temporal UI: {url}")


def _retried(task: TaskReport) -> bool:
    """Whether Temporal retried the task's last run after an infrastructure fault."""
    return bool(task.attempts) and (task.attempts[-1].tries or 1) > 1
