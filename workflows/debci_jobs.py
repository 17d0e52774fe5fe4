"""DebciJobs: the jobs one debci API call created for one suite and architecture, run and recorded.

Jobs are read a page at a time from PostgreSQL (the API stored them; models/debci.py), run with a
sliding window of `tests_in_flight` test activities, each with its request's priority and the
requester as fairness key, and recorded as they finish by one recording activity at a time. A baseline
request (`migration-reference/0`, no pins) is a campaign reference: a stored one answers it, one run
here is stored for campaigns (the claim protocol of CampaignBatch). A temporary failure is tried again
after backoff; `tmpfail` is reported when the tries are used up.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.exceptions import CancelledError as ActivityCancelled

with workflow.unsafe.imports_passed_through():
    from models.campaign import (
        CampaignTarget,
        ClaimReferencesInput,
        ClaimReferencesResult,
        ReferenceKey,
        RunContext,
        RunInput,
        RunOutcome,
        RunRequest,
        RunResult,
        Side,
        StoreReferencesInput,
    )
    from models.debci import (
        MIGRATION_REFERENCE,
        DebciStatus,
        JobBatchInput,
        JobPage,
        JobPageInput,
        JobResult,
        JobRun,
        RecordJobsInput,
        debci_status,
    )
    from models.identifiers import preview
    from models.vocabulary import ActivityName
    from workflows import queues
    from workflows import search_attributes as sa
    from workflows.policies import DB_RETRY

DB_TIMEOUT = timedelta(seconds=30)
PAGE = 1500  # jobs per page; a run continues as new after a page (its history stays under 10,240 events)
REFERENCE_MAX_AGE_DAYS = 30
CAUSE_CHARS = 300
# Runs recorded before results were recorded in groups recorded whatever had come after each recording.
GROUPED_RECORDS_PATCH = "debci-grouped-records"
RECORD_GROUP = 200
RECORD_WAIT = timedelta(seconds=5)


# Not sandboxed, like CampaignBatch: thousands of activations per call; no I/O, clock or randomness here.
@workflow.defn(name="DebciJobs", sandboxed=False)
class DebciJobsWorkflow:
    def __init__(self) -> None:
        self._context: RunContext | None = None
        self._counts: dict[str, int] = {}
        self._done = 0
        self._unrecorded: list[JobResult] = []
        self._claimed: dict[int, ReferenceKey] = {}  # reference jobs this run claimed, by job id
        self._ran: dict[int, tuple[ReferenceKey, RunOutcome]] = {}  # their outcomes, not stored yet
        self._recording = 0

    @workflow.query
    def run_context(self) -> RunContext:
        """What the simulated test activity needs besides target and side (models.campaign)."""
        if self._context is None:
            raise RuntimeError("the batch has not planned its jobs yet")
        return self._context

    @workflow.query
    def progress(self) -> dict[str, int]:
        return {"done": self._done, **self._counts}

    @workflow.run
    async def run(self, params: JobBatchInput) -> dict[str, int]:
        info = workflow.info()
        self._counts = dict(params.counts)
        self._done = sum(self._counts.values())
        page: JobPage = await workflow.execute_activity(
            ActivityName.PLAN_DEBCI_JOBS,
            JobPageInput(
                batch=info.workflow_id,
                first_job=params.first_job,
                last_job=params.last_job,
                txid=params.txid,
                suite=params.suite,
                after=params.offset,
                limit=PAGE,
            ),
            result_type=JobPage,
            start_to_close_timeout=DB_TIMEOUT,
            # The API's transaction may still be open: the activity says so and is tried again.
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
            ),
            summary=f"plan jobs after {params.offset}",
        )
        self._context = RunContext(
            trigger_source="",
            trigger_version="",
            suite=params.suite,
            suite_state=page.suite_state,
            architecture=params.architecture,
            simulation=params.simulation,
        )
        recorder = asyncio.ensure_future(self._record_loop(params))
        await self._run_jobs(params, page)
        self._recording = -1  # no more results: the recorder stops once its buffer is empty
        await recorder
        details = ", ".join(f"{k} {v}" for k, v in sorted(self._counts.items()))
        workflow.set_current_details(f"{self._done} jobs done; {details}")
        if len(page.jobs) == PAGE:
            workflow.continue_as_new(
                params.model_copy(update={"offset": page.jobs[-1].job_id, "counts": self._counts})
            )
        workflow.upsert_search_attributes([sa.RESULT.value_set("success")])
        workflow.upsert_memo({"summary": f"debci jobs {params.first_job}-{params.last_job}: {details}"})
        return self._counts

    async def _run_jobs(self, params: JobBatchInput, page: JobPage) -> None:
        slots = asyncio.Semaphore(params.tests_in_flight)

        async def run(job: JobRun, side: Side) -> None:
            async with slots:
                result = await self._job(params, job, side)
            self._finish(result)

        runs = [(j, Side.NEW if j.pins else Side.REFERENCE) for j in page.jobs if not j.is_reference]
        waiting = [j for j in page.jobs if j.is_reference]
        delay = 2.0
        while True:
            waiting, claimed = await self._claim(params, page, waiting)
            runs += [(j, Side.REFERENCE) for j in claimed]
            # Runs start in page order, at most tests_in_flight at a time (FIFO semaphore).
            await asyncio.gather(*(run(job, side) for job, side in runs))
            runs = []
            if not waiting:
                return
            # Another batch or campaign runs these references now: share its results, don't run twice.
            workflow.set_current_details(f"waiting for {len(waiting)} references run elsewhere")
            await workflow.sleep(timedelta(seconds=delay))
            delay = min(delay * 2, 300)

    async def _claim(
        self, params: JobBatchInput, page: JobPage, jobs: list[JobRun]
    ) -> tuple[list[JobRun], list[JobRun]]:
        """Stored references answer their jobs at once; the jobs of claimed ones run here, one per key;
        the rest wait (jobs still waiting, jobs to run)."""
        if not jobs:
            return [], []
        keys = {j.job_id: j.reference_key(params.suite, page.suite_state, params.architecture) for j in jobs}
        claim: ClaimReferencesResult = await workflow.execute_activity(
            ActivityName.CLAIM_REFERENCES,
            ClaimReferencesInput(
                keys=list({k.name: k for k in keys.values()}.values()),
                owner=workflow.info().workflow_id,
                max_age_days=REFERENCE_MAX_AGE_DAYS,
                lease_s=params.test_timeout_s * 2,
            ),
            result_type=ClaimReferencesResult,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"claim {len(keys)} references",
        )
        waiting, runs, claimed = [], [], set(claim.claimed)
        for job in jobs:
            name = keys[job.job_id].name
            if name in claim.found:
                self._finish(_result(job, claim.found[name], reused=True))
            elif name in claimed:
                claimed.discard(name)  # one run per key: the page's other jobs of this key wait for it
                self._claimed[job.job_id] = keys[job.job_id]
                runs.append(job)
            else:
                waiting.append(job)
        return waiting, runs

    async def _job(self, params: JobBatchInput, job: JobRun, side: Side) -> JobResult:
        """One job with its tries: tmpfail only when every try failed temporarily."""
        assert self._context is not None
        target = CampaignTarget(source=job.package, version=job.version)
        # A trigger may be 1,000 characters: the summary quotes its start.
        label = f"autopkgtest {job.package} {job.version} {params.architecture} ({preview(job.trigger, 60)})"
        if params.simulation is not None:
            label = f"simulated {label}"
        priority = Priority(priority_key=job.priority_key, fairness_key=params.requester)
        result: JobResult | None = None
        for attempt in range(1, params.tmpfail_tries + 1):
            arg: RunRequest | RunInput
            if params.simulation is not None:
                activity, arg = (
                    ActivityName.RUN_CAMPAIGN_TEST,
                    RunRequest(target=target, side=side, attempt=attempt),
                )
            else:
                activity = ActivityName.RUN_ARCHIVE_TEST
                request = RunRequest(target=target, side=side, attempt=attempt)
                arg = RunInput.of(request, self._context.model_copy(update=_run_context(job)))
            try:
                outcome: RunOutcome = await workflow.execute_activity(
                    activity,
                    arg,
                    result_type=RunOutcome,
                    task_queue=queues.test_queue(workflow.info().task_queue, params.architecture),
                    start_to_close_timeout=timedelta(seconds=params.test_timeout_s),
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=params.tmpfail_backoff_s),
                        backoff_coefficient=2.0,
                        maximum_attempts=params.tmpfail_tries,
                    ),
                    priority=priority,
                    summary=label,
                )
            except ActivityError as e:
                if isinstance(e.cause, ActivityCancelled):
                    raise
                cause = str(e.cause or e)
                if len(cause) > CAUSE_CHARS:
                    cause = cause[: CAUSE_CHARS - 1] + "…"
                self._ran_reference(job, RunOutcome(result=RunResult.UNTESTABLE, cause=cause))
                return JobResult(
                    job_id=job.job_id, status=DebciStatus.TMPFAIL, version=job.version, cause=cause
                )
            result = _result(job, outcome)
            if result.status is not DebciStatus.TMPFAIL:
                break
            if attempt < params.tmpfail_tries:
                await workflow.sleep(timedelta(seconds=params.tmpfail_backoff_s * 2 ** (attempt - 1)))
        assert result is not None
        if result.status is DebciStatus.TMPFAIL:
            # Never a reference: storing it as UNTESTABLE releases the claim for the next claimer.
            outcome = RunOutcome(result=RunResult.UNTESTABLE, cause=f"exit {result.exit_code}")
        self._ran_reference(job, outcome)
        return result

    def _ran_reference(self, job: JobRun, outcome: RunOutcome) -> None:
        key = self._claimed.pop(job.job_id, None)
        if key is not None:
            self._ran[job.job_id] = (key, outcome)

    def _finish(self, result: JobResult) -> None:
        self._unrecorded.append(result)
        self._counts[result.status] = self._counts.get(result.status, 0) + 1
        self._done += 1

    async def _record_loop(self, params: JobBatchInput) -> None:
        """Results recorded as they come, one activity at a time (the next takes all that came meanwhile):
        in groups of RECORD_GROUP, or what came within RECORD_WAIT of the first unrecorded result."""
        grouped = workflow.patched(GROUPED_RECORDS_PATCH)
        while True:
            await workflow.wait_condition(lambda: bool(self._unrecorded) or self._recording < 0)
            if grouped and self._recording >= 0:
                # Instant runs finish hundreds at a time: one recording each would cost more than they.
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda: len(self._unrecorded) >= RECORD_GROUP or self._recording < 0,
                        timeout=RECORD_WAIT,
                    )
            if not self._unrecorded:
                return
            results, self._unrecorded = self._unrecorded, []
            ran = {r.job_id: self._ran.pop(r.job_id) for r in results if r.job_id in self._ran}
            if ran:
                keys = list({key.name: key for key, _ in ran.values()}.values())
                await workflow.execute_activity(
                    ActivityName.STORE_REFERENCE_RESULTS,
                    StoreReferencesInput(
                        owner=workflow.info().workflow_id,
                        results={key.name: outcome for key, outcome in ran.values()},
                        keys=keys,
                    ),
                    start_to_close_timeout=DB_TIMEOUT,
                    retry_policy=DB_RETRY,
                    summary=f"store {len(keys)} reference results",
                )
            await workflow.execute_activity(
                ActivityName.RECORD_DEBCI_RESULTS,
                RecordJobsInput(
                    suite=params.suite,
                    architecture=params.architecture,
                    results=results,
                    simulated=params.simulation is not None,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=f"record {len(results)} results",
            )


def _run_context(job: JobRun) -> dict[str, object]:
    """What a real run of the job takes from it: its pins (the new side), and its trigger's first source,
    whose suite binaries a run without pins installs with the test, as a campaign's reference does."""
    source, _, version = ("" if job.trigger == MIGRATION_REFERENCE else job.trigger.split()[0]).partition("/")
    return {"pins": job.pins, "trigger_source": source, "trigger_version": version}


def _result(job: JobRun, outcome: RunOutcome, *, reused: bool = False) -> JobResult:
    status = debci_status(outcome.exit_code) if outcome.exit_code is not None else DebciStatus.TMPFAIL
    return JobResult(
        job_id=job.job_id,
        status=status,
        version=job.version,
        exit_code=outcome.exit_code,
        log_artifact_id=outcome.log_artifact_id,
        duration_s=outcome.duration_s,
        worker=outcome.worker,
        cause=outcome.cause,
        reused_reference=reused,
    )
