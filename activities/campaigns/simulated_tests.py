"""The simulated executor's campaign test: an outcome drawn from the campaign's simulation, a log only
for a FAIL, and a retry that reuses what an interrupted try stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.campaigns import simulated
from activities.faults import NO_FAULTS, FaultInjector
from activities.storage.history import WORKER_IDENTITY
from activities.storage.store import ArtifactStore, NewArtifact, StoredArtifact
from models.artifacts import ArtifactData, AutopkgtestData, AutopkgtestTestResult, PackageBuildLogData
from models.campaign import CampaignKind, RunContext, RunInput, RunOutcome, RunRequest, RunResult
from models.vocabulary import ActivityName, ArtifactCategory, TaskResult, autopkgtest_result

log = logging.getLogger("debflow.resume")

EXIT_CODES = {RunResult.PASS: 0, RunResult.FAIL: 4, RunResult.NEUTRAL: 8}


def campaign_outcome_from(stored: list[StoredArtifact]) -> RunOutcome | None:
    """A simulated campaign test stores a log only for a FAIL: that log is its whole outcome."""
    built = next((a for a in stored if a.category == ArtifactCategory.PACKAGE_BUILD_LOG), None)
    if built is not None:  # a simulated rebuild's failed build
        return RunOutcome(
            result=RunResult.FAIL, exit_code=int(built.data["exit_code"]), log_artifact_id=built.id
        )
    found = next((a for a in stored if a.category == ArtifactCategory.AUTOPKGTEST), None)
    if found is None or found.data.get("result") != TaskResult.FAILURE:
        return None
    return RunOutcome(
        result=RunResult.FAIL,
        exit_code=int(found.data["exit_code"]),
        tests={str(name): str(t["status"]) for name, t in found.data["tests"].items()},
        log_artifact_id=found.id,
    )


class SimulatedTests:
    """`run_campaign_test` over one artifact store, asking each batch once for its runs' context."""

    def __init__(
        self,
        *,
        store: ArtifactStore,
        scratch_dir: Path,
        expiration_days: int,
        client: Client | None = None,
        faults: FaultInjector = NO_FAULTS,
    ) -> None:
        self.store = store
        self.scratch_dir = scratch_dir
        self.expiration_days = expiration_days
        self.client = client  # for the batches' run_context query
        self.faults = faults
        self._contexts: OrderedDict[str, RunContext] = OrderedDict()

    async def _context(self, batch_id: str) -> RunContext:
        """The context of a batch's runs, asked of the batch once per worker (a few hundred kept)."""
        context = self._contexts.get(batch_id)
        if context is None:
            if self.client is None:
                raise ApplicationError("this worker has no Temporal client to ask the batch for its context")
            handle = self.client.get_workflow_handle(batch_id)
            context = await handle.query("run_context", result_type=RunContext)
            self._contexts[batch_id] = context
            while len(self._contexts) > 256:
                self._contexts.popitem(last=False)
        return context

    async def _reuse(self, info: activity.Info) -> RunOutcome | None:
        """On a retry, the outcome an interrupted try stored (None: run again)."""
        stored = await asyncio.to_thread(
            self.store.activity_artifacts, info.workflow_id or "", info.activity_id
        )
        outcome = campaign_outcome_from(stored)
        if outcome is not None:
            log.info(
                "run_campaign_test %s/%s try %d: reusing the outcome stored by an interrupted try",
                info.workflow_id,
                info.activity_id,
                info.attempt,
            )
        return outcome

    @activity.defn(name=ActivityName.RUN_CAMPAIGN_TEST)
    async def run_campaign_test(self, request: RunRequest) -> RunOutcome:
        """One simulated run; async because most runs are instant and a thread hop would dominate.
        (Real runs: campaigns/archive_tests.py.)"""
        info = activity.info()
        if info.attempt > 1:
            reused = await self._reuse(info)
            if reused is not None:
                return reused
        params = RunInput.of(request, await self._context(info.workflow_id or ""))
        if params.simulation is None:
            raise ApplicationError(
                "run_campaign_test runs the simulated executor only; real runs are run_archive_test",
                type="NotSupported",
                non_retryable=True,
            )
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        target = params.target
        result, tests, duration = simulated.simulated_outcome(
            params.simulation,
            target.source,
            target.version,
            params.architecture,
            params.side,
            params.attempt,
        )
        if params.kind is CampaignKind.REBUILD:
            # A build passes or fails: no tests, no NEUTRAL (the simulation's share of those builds).
            result = RunResult.FAIL if result is RunResult.FAIL else RunResult.PASS
            tests = {}
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            activity.heartbeat()
            await asyncio.sleep(min(left, 1.0))  # a cancellation arrives here as CancelledError
        log_id = None
        if result is RunResult.FAIL and params.kind is CampaignKind.REBUILD:
            log_id = await asyncio.to_thread(self._store_simulated_build_log, params)
            self.faults.after_store(ActivityName.RUN_CAMPAIGN_TEST)
        elif result is RunResult.FAIL:
            log_id = await asyncio.to_thread(self._store_simulated_log, params, result, tests)
            self.faults.after_store(ActivityName.RUN_CAMPAIGN_TEST)
        elapsed = time.monotonic() - clock
        return RunOutcome(
            result=result,
            exit_code=(0 if result is RunResult.PASS else 1)
            if params.kind is CampaignKind.REBUILD
            else EXIT_CODES[result],
            tests=tests,
            log_artifact_id=log_id,
            duration_s=elapsed,
            started_at=started,
            worker=WORKER_IDENTITY,
        )

    def _store_simulated_build_log(self, params: RunInput) -> int:
        """A simulated rebuild's failed build: a log saying plainly that nothing was built."""
        target = params.target
        text = (
            f"SIMULATED build of {target.source} {target.version} on {params.architecture}\n"
            f"side: {params.side}, attempt {params.attempt}, trigger {params.trigger_source} "
            f"{params.trigger_version}\nnothing was built; outcome drawn by the simulated executor\n"
        )
        data = PackageBuildLogData(
            source=target.source,
            version=target.version,
            architecture=params.architecture,
            filename="simulated.build",
            exit_code=1,
            result=str(TaskResult.FAILURE),
        )
        return self._register(ArtifactCategory.PACKAGE_BUILD_LOG, data, text)

    def _register(self, category: ArtifactCategory, data: ArtifactData, text: str) -> int:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.scratch_dir, suffix=".log", delete=False) as f:
            f.write(text)
        path = Path(f.name)
        try:
            info = activity.info()
            (artifact_id,) = self.store.register(
                [NewArtifact(category, data, {"log": path}, f"{info.workflow_id}/{info.activity_id}/log")],
                workflow_id=info.workflow_id,
                activity_id=info.activity_id,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expiration_days),
            )
        finally:
            path.unlink(missing_ok=True)
        return artifact_id

    def _store_simulated_log(self, params: RunInput, result: RunResult, tests: dict[str, str]) -> int:
        """A log saying plainly that nothing ran: failures must have logs to link from the report."""
        target = params.target
        lines = [
            f"SIMULATED autopkgtest run of {target.source} {target.version} on {params.architecture}",
            f"side: {params.side}, attempt {params.attempt}, trigger {params.trigger_source} "
            f"{params.trigger_version}",
            "no test was executed; outcome drawn by the simulated executor",
        ]
        lines += [f"{name:<20} {status}" for name, status in tests.items()]
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.scratch_dir, suffix=".log", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        path = Path(f.name)
        try:
            info = activity.info()
            data = AutopkgtestData(
                source=target.source,
                version=target.version,
                architecture=params.architecture,
                suite=params.suite,
                result=str(autopkgtest_result(EXIT_CODES[result])),
                exit_code=EXIT_CODES[result],
                virt_server=simulated.NAME,
                tests={n: AutopkgtestTestResult(status=s) for n, s in tests.items()},
            )
            (artifact_id,) = self.store.register(
                [
                    NewArtifact(
                        ArtifactCategory.AUTOPKGTEST,
                        data,
                        {"log": path},
                        f"{info.workflow_id}/{info.activity_id}/log",
                    )
                ],
                workflow_id=info.workflow_id,
                activity_id=info.activity_id,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expiration_days),
            )
        finally:
            path.unlink(missing_ok=True)
        return artifact_id
