"""Campaign: test every reverse dependency of an upload, partitioned into bounded batch workflows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from models import identifiers
    from models.campaign import (
        BatchInput,
        BatchResult,
        CampaignInput,
        CampaignKind,
        CampaignPlan,
        CampaignProgress,
        CampaignReport,
        PlanInput,
        Verdict,
        expected_seconds,
        longest_first,
    )
    from models.vocabulary import ActivityName
    from workflows import search_attributes as sa
    from workflows.campaign_batch import REBUILD_PATCH, CampaignBatchWorkflow
    from workflows.policies import DB_RETRY

# Runs recorded before ids were bounded (models.identifiers) named their batches CAMPAIGN-ARCH-batch-NNNN
# whatever the length, and took any trigger name.
BOUNDED_IDS_PATCH = "bounded-identifiers"

# Runs recorded before a cancelled campaign cancelled its running batches (they were terminated when it
# closed, without releasing their reference claims).
CANCEL_BATCHES_PATCH = "campaign-cancels-batches"


# Runs recorded before campaigns could be given their targets (instead of planning reverse
# dependencies) and pins (then no upload is needed: the new side is the pinned packages).
TARGETS_AND_PINS_PATCH = "campaign-targets-and-pins"

# Targets per page of a rebuild's plan: about 300 kB of payload (Temporal's limit is 2 MB).
PLAN_PAGE = 5000


@workflow.defn(name="Campaign")
class CampaignWorkflow:
    """Plans the targets once per architecture, then runs batches with a bounded number in flight."""

    def __init__(self) -> None:
        self._progress = CampaignProgress()
        self._bounded_ids = False

    @workflow.query
    def progress(self) -> CampaignProgress:
        return self._progress

    @workflow.run
    async def run(self, params: CampaignInput) -> CampaignReport:
        info = workflow.info()
        mode = "SIMULATED " if params.simulation is not None else ""
        rebuild = params.kind is CampaignKind.REBUILD and workflow.patched(REBUILD_PATCH)
        what = "rebuild campaign" if rebuild else "campaign"
        given = bool(params.pins or params.targets is not None) and workflow.patched(TARGETS_AND_PINS_PATCH)
        pinned = given and bool(params.pins) and not rebuild
        if (
            params.simulation is None
            and not (params.new_binary_artifact_ids and params.new_source_artifact_id)
            and not pinned
        ):
            raise ApplicationError(
                "a campaign with a real executor needs the upload's source and binaries "
                "(new_source_artifact_id, new_binary_artifact_ids; `debflow campaign --upload RUN_ID`) "
                "or pins (`--pin`)",
                type="BadCampaign",
                non_retryable=True,
            )
        self._bounded_ids = workflow.patched(BOUNDED_IDS_PATCH)
        if self._bounded_ids:
            try:
                # A run started without start_campaign (`temporal workflow start`) is checked here.
                identifiers.check_package(
                    params.trigger_source, params.trigger_version, params.trigger_binaries
                )
            except identifiers.TooLong as e:
                raise ApplicationError(str(e), type="BadCampaign", non_retryable=True) from None
        workflow.upsert_search_attributes(
            [
                sa.PACKAGE.value_set(params.trigger_source),
                sa.VERSION.value_set(params.trigger_version),
                sa.SUITE.value_set(params.suite),
                sa.KIND.value_set("campaign"),
                sa.ARCHITECTURES.value_set(params.architectures),
                sa.RESULT.value_set("running"),
                sa.REGRESSIONS.value_set(0),
            ]
        )
        batches: list[BatchInput] = []
        targets = 0
        for arch in params.architectures:
            if rebuild:
                plan = await self._plan_pages(params, arch)
            else:
                plan = await workflow.execute_activity(
                    ActivityName.PLAN_CAMPAIGN,
                    PlanInput(
                        trigger_source=params.trigger_source,
                        trigger_binaries=params.trigger_binaries,
                        suite=params.suite,
                        architecture=arch,
                        simulated=params.simulation is not None,
                        targets=params.targets if given else None,
                    ),
                    result_type=CampaignPlan,
                    start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=DB_RETRY,
                    summary=f"plan {params.trigger_source} in {params.suite} {arch}",
                )
            planned = plan.targets
            if params.target_limit:
                # The trigger's own tests first: a quick campaign should include them.
                own = [t for t in planned if t.source == params.trigger_source]
                planned = (own + [t for t in planned if t.source != params.trigger_source])[
                    : params.target_limit
                ]
            planned = longest_first(planned)
            targets += len(planned)
            batches += [
                BatchInput(
                    campaign=params,
                    campaign_id=info.workflow_id,
                    suite_state=plan.suite_state,
                    architecture=arch,
                    targets=planned[i : i + params.batch_size],
                )
                for i in range(0, len(planned), params.batch_size)
            ]
        self._progress = CampaignProgress(
            planned_targets=targets,
            batches=len(batches),
            expected_total_s=sum(expected_seconds(b.targets) for b in batches),
        )
        workflow.upsert_memo(
            {
                "summary": f"{mode}{what} for {params.trigger_source} "
                f"{params.trigger_version}: {targets} targets in {len(batches)} batches"
            }
        )
        total = await self._run_batches(params, batches)
        regressions = total.counts.get(Verdict.REGRESSION, 0)
        # debflow_regressions_found (docs/operations.md); the workflow meter does not count on replay.
        workflow.metric_meter().create_counter("debflow_regressions_found", "confirmed regressions").add(
            regressions, {"suite": params.suite}
        )
        workflow.upsert_search_attributes(
            [
                sa.RESULT.value_set("failure" if regressions else "success"),
                sa.REGRESSIONS.value_set(regressions),
            ]
        )
        workflow.upsert_memo(
            {
                "summary": f"{mode}{what} for {params.trigger_source} "
                f"{params.trigger_version}: {targets} targets, {regressions} regressions"
            }
        )
        return CampaignReport(
            workflow_id=info.workflow_id,
            kind=CampaignKind.REBUILD if rebuild else CampaignKind.TEST,
            trigger_source=params.trigger_source,
            trigger_version=params.trigger_version,
            suite=params.suite,
            architectures=params.architectures,
            simulated=params.simulation is not None,
            targets=targets,
            counts=total.counts,
            notable=total.notable,
            notable_omitted=total.notable_omitted,
            tests_run=total.tests_run,
            references_reused=total.references_reused,
            batches=len(batches),
            max_history_events=max(total.max_history_events, info.get_current_history_length()),
        )

    async def _plan_pages(self, params: CampaignInput, arch: str) -> CampaignPlan:
        """A rebuild's plan, page by page: an archive rebuild's targets do not fit one payload."""
        plan: CampaignPlan | None = None
        while True:
            offset = len(plan.targets) if plan else 0
            page: CampaignPlan = await workflow.execute_activity(
                ActivityName.PLAN_CAMPAIGN,
                PlanInput(
                    trigger_source=params.trigger_source,
                    trigger_binaries=params.trigger_binaries,
                    suite=params.suite,
                    architecture=arch,
                    simulated=params.simulation is not None,
                    kind=CampaignKind.REBUILD,
                    all_sources=params.all_sources,
                    offset=offset,
                    limit=PLAN_PAGE,
                ),
                result_type=CampaignPlan,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=DB_RETRY,
                summary=f"plan rebuilds of {params.trigger_source} in {params.suite} {arch} from {offset}",
            )
            if plan is not None and page.suite_state != plan.suite_state:
                raise ApplicationError(
                    f"suite {params.suite} was imported again while the rebuild was planned: start it again",
                    type="BadCampaign",
                    non_retryable=True,
                )
            if plan is None:
                plan = page
            else:
                plan.targets += page.targets
            done = len(page.targets) < PLAN_PAGE or (
                params.target_limit is not None and len(plan.targets) >= params.target_limit
            )
            if done:
                return plan

    async def _run_batches(self, params: CampaignInput, batches: list[BatchInput]) -> BatchResult:
        """A sliding window of `batches_in_flight` child workflows."""
        total = BatchResult()
        queue = list(enumerate(batches))
        running: set[asyncio.Task[BatchResult]] = set()
        while queue or running:
            while queue and len(running) < params.batches_in_flight:
                index, batch = queue.pop(0)
                running.add(asyncio.ensure_future(self._batch(index, batch)))
            try:
                finished, pending = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Only this coroutine is cancelled: cancel the batches too and wait until they have
                # released their reference claims and stopped their runs.
                if workflow.patched(CANCEL_BATCHES_PATCH):
                    for task in running:
                        task.cancel()
                    await asyncio.gather(*running, return_exceptions=True)
                raise
            running = set(pending)
            for task in finished:
                total.add(task.result())
                self._progress.batches_done += 1
            self._progress.counts = dict(total.counts)
            workflow.set_current_details(
                f"{self._progress.batches_done} of {self._progress.batches} batches done; "
                + ", ".join(f"{k} {v}" for k, v in sorted(total.counts.items()))
            )
            workflow.upsert_search_attributes(
                [sa.REGRESSIONS.value_set(total.counts.get(Verdict.REGRESSION, 0))]
            )
        return total

    async def _batch(self, index: int, batch: BatchInput) -> BatchResult:
        if self._bounded_ids:
            child_id = identifiers.batch_id(batch.campaign_id, batch.architecture, index)
        else:
            child_id = f"{batch.campaign_id}-{batch.architecture}-batch-{index:04d}"
        self._progress.running_batches.append(child_id)
        try:
            result: BatchResult = await workflow.execute_child_workflow(
                CampaignBatchWorkflow.run,
                batch,
                id=child_id,
                parent_close_policy=ParentClosePolicy.TERMINATE,
                static_summary=f"batch {index} of {batch.campaign.trigger_source} "
                f"{batch.architecture}: {len(batch.targets)} targets",
            )
        finally:
            self._progress.running_batches.remove(child_id)
        self._progress.expected_finished_s += expected_seconds(batch.targets)
        return result
