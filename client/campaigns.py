"""Starting campaigns, following them across batches, and printing their reports."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from client.api import get_report, workflow_url
from client.failures import ENDED_BADLY
from models import identifiers
from models.campaign import (
    BatchProgress,
    CampaignInput,
    CampaignKind,
    CampaignProgress,
    CampaignReport,
    TargetVerdict,
    Verdict,
)
from models.payloads import TaskResult
from workflows import search_attributes as sa
from workflows.campaign import CampaignWorkflow
from workflows.campaign_batch import CampaignBatchWorkflow

COLOURS = {
    Verdict.REGRESSION: "bold red",
    Verdict.FLAKY: "yellow",
    Verdict.ALWAYSFAIL: "red",
    Verdict.IMPROVEMENT: "green",
    Verdict.PASS: "green",
    Verdict.NEUTRAL: "white",
    Verdict.NO_REFERENCE: "magenta",
    Verdict.UNTESTABLE: "bold yellow",
}


async def start_campaign(
    client: Client, params: CampaignInput, task_queue: str, *, priority_key: int = 4
) -> WorkflowHandle[CampaignWorkflow, CampaignReport]:
    """Start a campaign; its batches and tests inherit its priority (1 first … 5 last) and its
    fairness key (from its workflow id), so campaigns share workers evenly and yield to uploads.

    A trigger whose names Debian could not hold raises identifiers.TooLong before anything starts."""
    identifiers.check_package(params.trigger_source, params.trigger_version, params.trigger_binaries)
    simulated = params.simulation is not None
    mode = "simulated-" if simulated else ""
    rebuild = params.kind is CampaignKind.REBUILD
    workflow_id = identifiers.campaign_id(
        params.trigger_source,
        params.trigger_version,
        simulated=simulated,
        unique=uuid.uuid4().hex[:8],
        kind="rebuild" if rebuild else "campaign",
    )
    what = "rebuild campaign: build-dependents" if rebuild else "campaign: reverse dependencies"
    if rebuild and params.all_sources:
        what = "rebuild campaign: every source"
    return await client.start_workflow(
        CampaignWorkflow.run,
        params,
        id=workflow_id,
        task_queue=task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.PACKAGE, params.trigger_source),
                SearchAttributePair(sa.VERSION, params.trigger_version),
                SearchAttributePair(sa.SUITE, params.suite),
                SearchAttributePair(sa.KIND, "campaign"),
                SearchAttributePair(sa.ARCHITECTURES, params.architectures),
                SearchAttributePair(sa.RESULT, "pending"),
                SearchAttributePair(sa.REGRESSIONS, 0),
            ]
        ),
        priority=Priority(
            priority_key=priority_key, fairness_key=identifiers.campaign_fairness_key(workflow_id)
        ),
        static_summary=f"{'SIMULATED ' if mode else ''}{what} of "
        f"{params.trigger_source} {params.trigger_version} in {params.suite}",
    )


class NotBuilt(ValueError):
    """The upload run has no successful build to test its reverse dependencies with."""


async def campaign_for_upload(
    client: Client, upload_workflow_id: str, *, suite: str | None = None, **options: Any
) -> CampaignInput:
    """A real campaign for the binaries an UploadPipeline run built: its reverse dependencies in `suite`
    (default: the upload's) are tested with those binaries (new) and without (reference)."""
    report = await get_report(client, upload_workflow_id)
    builds = [t for t in report.tasks if t.name == "build" and t.result == TaskResult.SUCCESS]
    architectures = [t.architecture for t in builds]
    if not builds:
        raise NotBuilt(
            f"upload run {upload_workflow_id} ({report.source} {report.version}) built nothing "
            "successfully: there are no binaries to test its reverse dependencies with"
        )
    return CampaignInput(
        trigger_source=report.source,
        trigger_version=report.version,
        suite=suite or report.suite,
        architectures=architectures,
        # Every artifact of the builds; the test activity installs the binary packages among them.
        new_source_artifact_id=report.upload_artifact_id,
        new_binary_artifact_ids=[i for t in builds for i in t.artifact_ids],
        upload_workflow_id=upload_workflow_id,
        **options,
    )


class Estimator:
    """Time left from the share of expected test time done (count of targets without history), and,
    once the run is over, how far off the estimates made at 25, 50 and 75 % were."""

    MARKS = (0.25, 0.5, 0.75)

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.predictions: dict[float, tuple[float, float]] = {}  # mark → (made at, predicted end)

    def update(self, fraction: float) -> float | None:
        """Seconds left, or None before there is anything to go on."""
        if fraction <= 0:
            return None
        now = time.monotonic()
        left = (now - self.started) * (1 - fraction) / fraction
        for mark in self.MARKS:
            # A mark passed at the very end (a campaign of one or two targets) estimated nothing.
            if mark <= fraction < 1 and mark not in self.predictions:
                self.predictions[mark] = (now, now + left)
        return left

    def errors(self) -> list[str]:
        end = time.monotonic()
        lines = []
        for mark, (made, predicted) in sorted(self.predictions.items()):
            actual, estimated = end - made, predicted - made
            error = (estimated - actual) / actual if actual > 0 else 0.0
            lines.append(
                f"estimate at {mark:.0%}: {estimated:.0f} s left, took {actual:.0f} s ({error:+.0%})"
            )
        return lines


def _fraction(state: CampaignProgress, running: dict[str, BatchProgress]) -> float:
    """Share of the campaign done, weighted by expected test time where the history knows it."""
    live = [running[b] for b in state.running_batches if b in running]
    if state.expected_total_s > 0:
        done = state.expected_finished_s + sum(b.expected_done_s for b in live)
        return min(1.0, done / state.expected_total_s)
    if state.planned_targets:
        return min(1.0, (_done_targets(state) + sum(b.done_targets for b in live)) / state.planned_targets)
    return 0.0


async def watch_campaign(client: Client, workflow_id: str, console: Console) -> None:
    """A bar for the whole campaign (targets done, time left) and one per running batch."""
    root = client.get_workflow_handle_for(CampaignWorkflow.run, workflow_id)
    columns = (
        TextColumn("{task.fields[name]:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    estimator = Estimator()
    with Progress(*columns, console=console) as bars:
        overall = bars.add_task("planning", total=None, name=workflow_id[:44])
        per_batch: dict[str, TaskID] = {}
        running: dict[str, BatchProgress] = {}
        while True:
            status = (await root.describe()).status
            if status in ENDED_BADLY:
                bars.update(overall, description=ENDED_BADLY[status])
                break  # how it ended is told after the bars
            closed = status != WorkflowExecutionStatus.RUNNING
            try:
                state: CampaignProgress = await root.query(CampaignWorkflow.progress)
            except RPCError:
                state = CampaignProgress()
            for batch_id in state.running_batches:
                try:
                    batch: BatchProgress = await client.get_workflow_handle_for(
                        CampaignBatchWorkflow.run, batch_id
                    ).query(CampaignBatchWorkflow.progress)
                except RPCError:
                    continue
                if batch_id not in per_batch:
                    per_batch[batch_id] = bars.add_task("", total=batch.targets, name=batch_id[-44:])
                bars.update(
                    per_batch[batch_id],
                    completed=batch.done_targets,
                    total=batch.targets,
                    description=batch.waiting_text(),
                )
                running[batch_id] = batch
            for batch_id in [b for b in per_batch if b not in state.running_batches]:
                bars.remove_task(per_batch.pop(batch_id))
                running.pop(batch_id, None)
            left = estimator.update(_fraction(state, running))
            counts = ", ".join(f"{k} {v}" for k, v in sorted(state.counts.items()))
            live_done = sum(b.done_targets for b in running.values())
            eta = f" ~{left:.0f} s left" if left is not None and not closed else ""
            bars.update(
                overall,
                total=state.planned_targets or None,
                completed=min(state.planned_targets, _done_targets(state) + live_done),
                description=f"batches {state.batches_done}/{state.batches}{eta} {counts}",
            )
            if closed:
                break
            await asyncio.sleep(1)
    for line in estimator.errors():
        console.print(line)


def _done_targets(state: CampaignProgress) -> int:
    return sum(state.counts.values())


def print_campaign_report(
    report: CampaignReport,
    console: Console,
    ui_url: str | None,
    namespace: str,
    *,
    listed: list[TargetVerdict] | None = None,
) -> None:
    """Counts per verdict, then a row per listed target (default: the notable ones)."""
    mode = "[bold magenta]SIMULATED[/] " if report.simulated else ""
    rebuild = report.kind is CampaignKind.REBUILD
    console.print(
        f"{mode}{'rebuild campaign' if rebuild else 'campaign'} for "
        f"[bold]{report.trigger_source} {report.trigger_version}[/] in "
        f"{report.suite} ({' '.join(report.architectures)}): {report.targets} targets, "
        f"{report.tests_run} {'builds' if rebuild else 'test runs'}, "
        f"{report.references_reused} references reused, "
        f"{report.batches} batches, largest history {report.max_history_events} events"
    )
    counts = Table(show_edge=False)
    for verdict in Verdict:
        counts.add_column(str(verdict))
    counts.add_row(*[f"[{COLOURS.get(v, 'white')}]{report.counts.get(v, 0)}[/]" for v in Verdict])
    console.print(counts)
    if listed is None:
        listed = report.notable
    if listed:
        table = Table(show_edge=False)
        # Only when some reference was an earlier result reused: the version it ran.
        earlier = any(v.reference_version is not None for v in listed)
        columns = ["verdict", "source", "version", "arch", "regressed tests", "new log", "reference log"]
        for column in columns + (["reference of"] if earlier else []):
            table.add_column(column)
        order = list(Verdict)  # most telling first, as the enum lists them
        for v in sorted(listed, key=lambda v: (order.index(v.verdict), v.source, v.architecture)):
            row = [
                f"[{COLOURS.get(v.verdict, 'white')}]{v.verdict}[/]",
                v.source,
                v.version,
                v.architecture,
                " ".join(v.regressed_tests),
                str(v.new_log_artifact_id or ""),
                str(v.reference_log_artifact_id or ""),
            ]
            table.add_row(*row, *([v.reference_version or ""] if earlier else []))
        console.print(table)
    for v in sorted((v for v in report.notable if v.verdict is Verdict.UNTESTABLE), key=lambda v: v.source):
        console.print(
            f"[{COLOURS[v.verdict]}]UNTESTABLE[/] {v.source} {v.version} {v.architecture}: {v.cause}"
        )
    url = workflow_url(ui_url, namespace, report.workflow_id)
    if url:
        console.print(f"  Temporal UI: {url}")
