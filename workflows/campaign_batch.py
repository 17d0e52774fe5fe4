"""CampaignBatch: at most 500 test targets of one architecture, tested new and against a reference."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.exceptions import CancelledError as ActivityCancelled

with workflow.unsafe.imports_passed_through():
    from models.campaign import (
        BatchInput,
        BatchProgress,
        BatchResult,
        CampaignKind,
        CampaignTarget,
        ClaimReferencesInput,
        ClaimReferencesResult,
        RecordRunsInput,
        ReferenceKey,
        ReleaseReferencesInput,
        RunContext,
        RunInput,
        RunOutcome,
        RunRecord,
        RunRequest,
        RunResult,
        Side,
        StoreReferencesInput,
        Verdict,
        expected_seconds,
    )
    from models.verdicts import after_rerun, target_verdict, untestable_cause
    from models.vocabulary import ActivityName
    from workflows import queues
    from workflows.policies import CAMPAIGN_TEST_RETRY, DB_RETRY
    from workflows.upload_pipeline import QUEUES_PATCH

NOTABLE = {
    Verdict.REGRESSION,
    Verdict.FLAKY,
    Verdict.ALWAYSFAIL,
    Verdict.IMPROVEMENT,
    Verdict.NO_REFERENCE,
    Verdict.UNTESTABLE,
}
# Runs recorded before a test that could not run became its target's UNTESTABLE verdict (the batch
# failed instead), and before a failed or cancelled batch released its reference claims.
UNTESTABLE_PATCH = "campaign-untestable-targets"
RELEASE_PATCH = "campaign-batch-releases-claims"
# Runs recorded before every target's verdict was stored with the chunk's task history.
VERDICTS_PATCH = "campaign-verdicts-stored"
# Rebuild campaigns (docs/rebuilds.md): the same workflows planning build-dependencies and building the
# targets. Only runs started as rebuilds take this path; the marker dates them.
REBUILD_PATCH = "rebuild-campaigns"
# Runs recorded before a target without a reference of its own reused the newest one of an earlier
# version or suite state (unless the campaign asks for fresh references), and before the new side took
# the campaign's pins.
PREVIOUS_PATCH = "campaign-previous-references"
# An UNTESTABLE target's cause is kept short: it travels in every batch result and campaign report.
CAUSE_CHARS = 300


# Claims, results and history are one short transaction each: a worker killed during one should cost
# seconds, not minutes, before the retry runs elsewhere.
DB_ACTIVITY_TIMEOUT = timedelta(seconds=30)


# Not sandboxed: a glibc campaign activates batches ~9,000 times and the sandbox's per-activation cost
# was a fifth of the worker's CPU (measured with py-spy, bench/run_campaign.py). The code here is
# deterministic by construction (no I/O, no clocks, no randomness) and replay tests keep it so.
@workflow.defn(name="CampaignBatch", sandboxed=False)
class CampaignBatchWorkflow:
    """Claims or reuses references, runs new and reference tests, confirms regressions by a re-run."""

    def __init__(self) -> None:
        self._progress = BatchProgress(targets=0, done_targets=0, counts={})
        self._test_queue: str | None = None
        self._context: RunContext | None = None
        # Reference claims this batch holds without a stored result, and the test runs it started in
        # the current chunk: what a failed or cancelled batch gives up.
        self._claimed: dict[str, ReferenceKey] = {}
        self._runs: list[asyncio.Future[RunOutcome]] = []
        self._kind = CampaignKind.TEST
        self._build_queue: str | None = None

    @workflow.query
    def progress(self) -> BatchProgress:
        return self._progress

    @workflow.query
    def run_context(self) -> RunContext:
        """What the batch's test runs share; simulated runs' activities ask for it (models.campaign)."""
        if self._context is None:
            raise RuntimeError("the batch has not started yet")
        return self._context

    @workflow.run
    async def run(self, params: BatchInput) -> BatchResult:
        try:
            return await self._run(params)
        except (Exception, asyncio.CancelledError):
            # Not on continue-as-new (a BaseException, and no claim is held between chunks) nor on a
            # worker's eviction of the workflow from its cache (another BaseException).
            if self._claimed and workflow.patched(RELEASE_PATCH):
                await self._give_up()
            raise

    async def _give_up(self) -> None:
        """Stop the runs in flight and release the claims held, so that the next campaign needing these
        references runs them at once instead of waiting for the lease to run out."""
        for run in self._runs:
            run.cancel()
        keys = list(self._claimed.values())
        await workflow.execute_activity(
            ActivityName.RELEASE_REFERENCES,
            ReleaseReferencesInput(owner=workflow.info().workflow_id, keys=keys),
            start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"release {len(keys)} reference claims",
        )
        self._claimed.clear()

    async def _run(self, params: BatchInput) -> BatchResult:
        done, remaining = params.done, list(params.targets)
        campaign = params.campaign
        if campaign.kind is CampaignKind.REBUILD and workflow.patched(REBUILD_PATCH):
            self._kind = CampaignKind.REBUILD
        self._context = RunContext(
            trigger_source=campaign.trigger_source,
            trigger_version=campaign.trigger_version,
            suite=campaign.suite,
            suite_state=params.suite_state,
            architecture=params.architecture,
            simulation=campaign.simulation,
            new_source_artifact_id=campaign.new_source_artifact_id,
            new_binary_artifact_ids=campaign.new_binary_artifact_ids,
            kind=self._kind,
            pins=campaign.pins,
        )
        # Runs recorded before worker pools scheduled tests on the batch's own queue.
        if workflow.patched(QUEUES_PATCH):
            self._test_queue = queues.test_queue(workflow.info().task_queue, params.architecture)
            # Real rebuilds are builds: they go where the build workers are (simulated ones stay on
            # the test queue, with the simulated activity).
            self._build_queue = queues.build_queue(workflow.info().task_queue, params.architecture)
        chunk_size = max(1, params.campaign.tests_in_flight // 2)
        self._progress = BatchProgress(
            targets=params.done_targets + len(remaining),
            done_targets=params.done_targets,
            counts=dict(done.counts),
            expected_total_s=expected_seconds(params.targets),
        )
        costliest = 0
        while remaining:
            chunk, remaining = remaining[:chunk_size], remaining[chunk_size:]
            before = workflow.info().get_current_history_length()
            done.add(await self._chunk(params, chunk))
            self._progress.done_targets += len(chunk)
            self._progress.expected_done_s += expected_seconds(chunk)
            self._progress.counts = dict(done.counts)
            history = workflow.info().get_current_history_length()
            done.max_history_events = max(done.max_history_events, history)
            workflow.set_current_details(
                f"{self._progress.done_targets} of {self._progress.targets} targets; "
                + ", ".join(f"{k} {v}" for k, v in sorted(done.counts.items()))
            )
            # Start the next chunk only if it fits the budget even if it costs half again as much
            # as the costliest so far (re-runs and retries vary the cost).
            costliest = max(costliest, history - before)
            if remaining and history + costliest * 3 // 2 > params.campaign.history_budget:
                workflow.continue_as_new(
                    params.model_copy(
                        update={
                            "targets": remaining,
                            "done": done,
                            "done_targets": self._progress.done_targets,
                        }
                    )
                )
        done.max_history_events = max(done.max_history_events, workflow.info().get_current_history_length())
        return done

    def _key(self, params: BatchInput, target: CampaignTarget) -> ReferenceKey:
        return ReferenceKey(
            source=target.source,
            version=target.version,
            architecture=params.architecture,
            suite=params.campaign.suite,
            suite_state=params.suite_state,
            kind=self._kind,
        )

    def _previous(self, params: BatchInput) -> bool:
        """Whether a target without a reference of its own reuses an earlier one (docs/campaigns.md)."""
        if self._kind is not CampaignKind.TEST or params.campaign.fresh_references:
            return False
        return workflow.patched(PREVIOUS_PATCH)

    async def _claim(
        self, params: BatchInput, keys: list[ReferenceKey], *, previous: bool = False
    ) -> ClaimReferencesResult:
        claim: ClaimReferencesResult = await workflow.execute_activity(
            ActivityName.CLAIM_REFERENCES,
            ClaimReferencesInput(
                keys=keys,
                owner=workflow.info().workflow_id,
                max_age_days=params.campaign.reference_max_age_days,
                lease_s=params.campaign.test_timeout_s * 2,
                previous=previous,
            ),
            result_type=ClaimReferencesResult,
            start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"claim {len(keys)} references",
        )
        return claim

    def _test(
        self, params: BatchInput, target: CampaignTarget, side: Side, attempt: int = 1
    ) -> asyncio.Future[RunOutcome]:
        campaign, context = params.campaign, self._context
        assert context is not None
        tool = "sbuild" if self._kind is CampaignKind.REBUILD else "autopkgtest"
        label = f"{tool} {target.source} {target.version} {params.architecture} ({side}"
        label += ", re-run)" if attempt > 1 else ")"
        request = RunRequest(
            target=CampaignTarget(source=target.source, version=target.version), side=side, attempt=attempt
        )
        arg: RunRequest | RunInput
        queue = self._test_queue
        if campaign.simulation is not None:
            # Simulated runs are instant: their input stays small, the activity asks for the context.
            activity, arg, label = ActivityName.RUN_CAMPAIGN_TEST, request, f"simulated {label}"
        else:
            # Real runs take minutes: they carry their context, and need no query to start.
            arg = RunInput.of(request, context)
            if side is not Side.NEW:  # the reference side installs nothing of the upload, nor pins
                arg = arg.model_copy(
                    update={"new_source_artifact_id": None, "new_binary_artifact_ids": [], "pins": []}
                )
            activity = ActivityName.RUN_ARCHIVE_TEST
            if self._kind is CampaignKind.REBUILD:
                activity, queue = ActivityName.RUN_ARCHIVE_BUILD, self._build_queue
        run = workflow.start_activity(
            activity,
            arg,
            result_type=RunOutcome,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=campaign.test_timeout_s),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=CAMPAIGN_TEST_RETRY,
            summary=label,
        )
        self._runs.append(run)
        # Commands stay in the same order: the activity is scheduled above, the task only awaits it.
        return asyncio.ensure_future(self._outcome(run))

    @staticmethod
    async def _outcome(run: asyncio.Future[RunOutcome]) -> RunOutcome:
        """The run's outcome; a run that failed for good (Temporal retries infrastructure faults until
        they pass) is UNTESTABLE, with the error as its cause."""
        try:
            return await run
        except ActivityError as e:
            if isinstance(e.cause, ActivityCancelled) or not workflow.patched(UNTESTABLE_PATCH):
                raise
            cause = str(e.cause or e)
            if len(cause) > CAUSE_CHARS:  # an executor's message ends in a log tail: the start says why
                cause = cause[: CAUSE_CHARS - 1] + "…"
            return RunOutcome(result=RunResult.UNTESTABLE, cause=cause, started_at=workflow.now())

    async def _references(
        self,
        params: BatchInput,
        chunk: list[CampaignTarget],
        new_runs: dict[str, asyncio.Future[RunOutcome]],
        *,
        previous: bool = False,
    ) -> tuple[dict[str, RunOutcome], dict[str, RunOutcome], dict[str, str]]:
        """Reference outcome per key name (reused, run by us, or awaited from whoever runs it), the
        ones this batch ran, and the version of those reused from an earlier version or suite state."""
        keys = {self._key(params, t).name: self._key(params, t) for t in chunk}
        by_name = {name: t for name, t in zip(keys, chunk, strict=True)}
        references: dict[str, RunOutcome] = {}
        ran: dict[str, RunOutcome] = {}
        earlier: dict[str, str] = {}
        pending, delay = list(keys), 2.0
        while pending:
            claim = await self._claim(params, [keys[n] for n in pending], previous=previous)
            references |= claim.found
            earlier |= claim.previous
            self._claimed |= {n: keys[n] for n in claim.claimed}
            self._progress.waiting_for = {}
            if claim.claimed:
                runs = [self._test(params, by_name[n], Side.REFERENCE) for n in claim.claimed]
                outcomes = dict(zip(claim.claimed, await asyncio.gather(*runs), strict=True))
                await workflow.execute_activity(
                    ActivityName.STORE_REFERENCE_RESULTS,
                    StoreReferencesInput(
                        owner=workflow.info().workflow_id,
                        results=outcomes,
                        keys=[keys[n] for n in claim.claimed],
                    ),
                    start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
                    retry_policy=DB_RETRY,
                    summary=f"store {len(outcomes)} reference results",
                )
                references |= outcomes
                ran |= outcomes
                for name in claim.claimed:
                    self._claimed.pop(name, None)
            pending = claim.waiting
            if pending:
                # Another campaign runs these references right now: share its results, don't run twice.
                self._progress.waiting_for = {n: claim.owners.get(n, "") for n in pending}
                owners = sorted({o for o in self._progress.waiting_for.values() if o})
                workflow.set_current_details(
                    f"waiting for {len(pending)} references run by {', '.join(owners) or 'another batch'}"
                )
                await asyncio.gather(*new_runs.values())
                await workflow.sleep(timedelta(seconds=delay))
                delay = min(delay * 2, 300)
        self._progress.waiting_for = {}
        return references, ran, earlier

    async def _chunk(self, params: BatchInput, chunk: list[CampaignTarget]) -> BatchResult:
        self._runs = []
        new_runs = {self._key(params, t).name: self._test(params, t, Side.NEW) for t in chunk}
        references, ran, earlier = await self._references(
            params, chunk, new_runs, previous=self._previous(params)
        )
        new = {name: await run for name, run in new_runs.items()}
        by_name = {self._key(params, t).name: t for t in chunk}
        records = [RunRecord(target=by_name[n], side=Side.NEW, attempt=1, outcome=o) for n, o in new.items()]
        verdicts = {
            name: target_verdict(
                target, params.architecture, new[name], references.get(name), earlier.get(name)
            )
            for name, target in by_name.items()
        }
        suspects = [t for t in chunk if verdicts[self._key(params, t).name].verdict is Verdict.REGRESSION]
        reused = [t for t in suspects if self._key(params, t).name in earlier]
        if reused:
            # A regression against an earlier version's result may be the suite's doing since: the
            # target's own reference is run (or awaited) before the verdict.
            fresh, fresh_ran, _ = await self._references(params, reused, {})
            ran |= fresh_ran
            for target in reused:
                name = self._key(params, target).name
                verdicts[name] = target_verdict(target, params.architecture, new[name], fresh.get(name), None)
            suspects = [
                t for t in suspects if verdicts[self._key(params, t).name].verdict is Verdict.REGRESSION
            ]
        records += [
            RunRecord(target=by_name[n], side=Side.REFERENCE, attempt=1, outcome=o) for n, o in ran.items()
        ]
        reruns = await asyncio.gather(*(self._test(params, t, Side.NEW, attempt=2) for t in suspects))
        for target, rerun in zip(suspects, reruns, strict=True):
            name = self._key(params, target).name
            records.append(RunRecord(target=target, side=Side.NEW, attempt=2, outcome=rerun))
            verdicts[name] = verdicts[name].model_copy(
                update={
                    "verdict": after_rerun(rerun.result),
                    "cause": untestable_cause(rerun, None),
                    "attempts": 2,
                    "new_log_artifact_id": rerun.log_artifact_id or verdicts[name].new_log_artifact_id,
                }
            )
        # Every verdict is stored for the report, which lists all targets (the result keeps the notable).
        stored = list(verdicts.values()) if workflow.patched(VERDICTS_PATCH) else []
        await workflow.execute_activity(
            ActivityName.RECORD_RUNS,
            RecordRunsInput(
                suite=params.campaign.suite,
                architecture=params.architecture,
                simulated=params.campaign.simulation is not None,
                runs=records,
                campaign_id=params.campaign_id if stored else None,
                verdicts=stored,
                kind=self._kind,
            ),
            start_to_close_timeout=DB_ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"record {len(records)} runs in the task history",
        )
        result = BatchResult(tests_run=len(records), references_reused=len(references) - len(ran))
        for decided in verdicts.values():
            result.counts[decided.verdict] = result.counts.get(decided.verdict, 0) + 1
            if decided.verdict in NOTABLE:
                result.notable.append(decided)
        return result
