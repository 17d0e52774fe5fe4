"""UploadPipeline: build an upload per architecture, then lint and test what was built.

Once every task has a final state the run ends with its report (the workflow result; the `report` and
`progress` queries and the DebflowResult search attribute follow it as it runs). `debflow retry` starts
a new run of the same workflow id with `retry_of` and the previous report: it re-runs the failed and
errored tasks and what depends on them, reusing every task that succeeded, and its report carries every
attempt forward.

Runs started before runs ended with their tasks stayed open for `retry_window_s`, re-ran failed tasks
with the `retry_failed` update and closed with the `close` signal; both stay for those runs and their
histories.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.architectures import builds_on, recorded_wildcard_matches
    from models.payloads import (
        AutopkgtestResult,
        BlhcResult,
        BuildInput,
        BuildResult,
        Check,
        CheckInput,
        CheckResult,
        DebdiffResult,
        LintianResult,
        PipelineProgress,
        PiupartsResult,
        QaCheckInput,
        TaskErrorInput,
        TaskResult,
        TaskTimeouts,
        UploadDescription,
        UploadPipelineInput,
        UploadReport,
    )
    from models.vocabulary import ActivityName
    from workflows import search_attributes as sa
    from workflows import upload_activities as calls
    from workflows.pipeline_tasks import CHECKS, QA_CHECKS, TASK_NAMES, PipelineTasks, task_key

# Runs recorded before issue 5 (tests/histories/upload-pipeline-*-debflow.json) took none of these paths:
# timeouts from task history, the retry window and retry_failed.
RETRIES_PATCH = "timeouts-from-history-and-retry-window"
# Runs recorded before worker pools ran every activity on the workflow's own task queue.
QUEUES_PATCH = "capability-queues"
# Runs recorded before this patch kept a retry window open, took timeouts from their input, judged
# Architecture wildcards themselves and recorded no task-history row for an errored task.
ENDS_WITH_TASKS_PATCH = "ends-with-its-tasks"
# Runs recorded before the opt-in QA checks (debdiff, blhc, piuparts: activities/qa/) could run them.
QA_CHECKS_PATCH = "upload-qa-checks"

# Each QA check: its activity and result.
QA_ACTIVITIES: dict[str, tuple[str, type[CheckResult]]] = {
    "debdiff": (ActivityName.RUN_DEBDIFF, DebdiffResult),
    "blhc": (ActivityName.RUN_BLHC, BlhcResult),
    "piuparts": (ActivityName.RUN_PIUPARTS, PiupartsResult),
}


@workflow.defn(name="UploadPipeline")
class UploadPipelineWorkflow:
    """One upload: describe it, build per architecture, run lintian and autopkgtest on each build."""

    def __init__(self) -> None:
        self._tasks = PipelineTasks()
        self._upload: UploadDescription | None = None
        self._params: UploadPipelineInput | None = None
        self._timeouts: dict[str, float] = {}
        self._policy = TaskTimeouts()
        self._builds: dict[str, BuildResult] = {}  # architecture → its last successful build
        self._finished = False
        self._closing = False
        self._retrying = False
        self._rounds = 0
        self._open_until: datetime | None = None
        self._capability_queues = False
        self._ends_with_tasks = False
        self._qa_checks = False

    @workflow.query
    def progress(self) -> PipelineProgress:
        upload = self._upload
        return PipelineProgress(
            source=upload.source if upload else "",
            version=upload.version if upload else "",
            tasks=self._tasks.all(),
            finished=self._finished,
        )

    @workflow.query
    def report(self) -> UploadReport:
        """The report so far (complete once `progress().finished`)."""
        return self._report()

    @workflow.signal
    def close(self) -> None:
        """Stop accepting retries: the run returns its report as soon as no retry is running."""
        self._closing = True

    @workflow.update
    async def retry_failed(self) -> UploadReport:
        """Re-run the failed and errored tasks and the tasks depending on them; returns the new report.
        (Runs with a retry window only: later runs end with their tasks and are retried in a new run.)"""
        self._retrying, self._finished, self._rounds = True, False, self._rounds + 1
        workflow.upsert_search_attributes([sa.RESULT.value_set("running")])
        try:
            await self._retry_round()
        finally:
            self._retrying = False
            self._finish()
        return self._report()

    @retry_failed.validator
    def _validate_retry(self) -> None:
        if self._params is None or not self._finished or self._retrying:
            raise ValueError("the run's tasks are still running: retry once they have finished")
        if self._closing or self._ends_with_tasks:
            raise ValueError("the run no longer accepts retries (its retry window closed)")
        if not self._tasks.failed():
            raise ValueError("no task failed or errored: there is nothing to retry")

    def _set_details(self) -> None:
        workflow.set_current_details(self._tasks.details())

    def _skip(self, arch: str, names: tuple[str, ...], reason: str) -> None:
        self._tasks.skip(arch, names, reason)
        self._set_details()

    def _report(self) -> UploadReport:
        upload, params = self._upload, self._params
        return UploadReport(
            workflow_id=workflow.info().workflow_id,
            source=upload.source if upload else "",
            version=upload.version if upload else "",
            suite=params.suite if params else "",
            architectures=params.architectures if params else [],
            result=self._tasks.overall(),
            tasks=self._tasks.all(),
            retry_rounds=self._rounds,
            accepting_retries_until=self._open_until if not self._closing else None,
            source_artifact_id=params.source_artifact_id if params else None,
            retry_of=params.retry_of if params else None,
            builds=dict(self._builds),
        )

    def _finish(self) -> None:
        overall = self._tasks.overall()
        workflow.upsert_search_attributes([sa.RESULT.value_set(str(overall))])
        self._finished = True
        details = f"finished: {overall}"
        if self._open_until is not None and not self._closing:
            details += f"; accepting retry_failed until {self._open_until:%Y-%m-%d %H:%M:%S} UTC"
        workflow.set_current_details(details)

    @workflow.run
    async def run(self, params: UploadPipelineInput) -> UploadReport:
        self._params = params
        current = workflow.patched(RETRIES_PATCH)
        self._capability_queues = workflow.patched(QUEUES_PATCH)
        self._ends_with_tasks = workflow.patched(ENDS_WITH_TASKS_PATCH)
        self._qa_checks = workflow.patched(QA_CHECKS_PATCH)
        upload = self._upload = await calls.describe_upload(params, with_architectures=self._ends_with_tasks)
        workflow.upsert_search_attributes(
            [
                sa.PACKAGE.value_set(upload.source),
                sa.VERSION.value_set(upload.version),
                sa.SUITE.value_set(params.suite),
                sa.KIND.value_set("upload"),
                sa.ARCHITECTURES.value_set(params.architectures),
                sa.RESULT.value_set("running"),
            ]
        )
        self._policy = params.timeouts
        if self._ends_with_tasks:
            # Timeouts and heartbeats are the workers' policy: a control worker's settings, with task
            # history's estimates (the input's timeouts only if the history cannot be read).
            estimates = await calls.estimate_timeouts(params, upload, None)
            if estimates is not None:
                self._timeouts, self._policy = estimates.timeouts, estimates.policy or params.timeouts
        elif current:
            estimates = await calls.estimate_timeouts(params, upload, params.timeouts)
            self._timeouts = estimates.timeouts if estimates is not None else {}
        if self._ends_with_tasks and params.previous is not None:
            # A retry in a new run: the previous run's tasks and builds, then what failed in it.
            self._tasks.carry(params.previous.tasks)
            self._builds = dict(params.previous.builds)
            self._rounds = params.previous.retry_rounds + 1
            await self._retry_round()
        else:
            qa = tuple(str(c) for c in params.tasks if str(c) in QA_CHECKS) if self._qa_checks else ()
            self._tasks.add(params.architectures, qa)
            await asyncio.gather(
                *(self._architecture(arch, first=i == 0) for i, arch in enumerate(params.architectures))
            )
        if current and not self._ends_with_tasks and params.retry_window_s > 0:
            self._open_until = workflow.now() + timedelta(seconds=params.retry_window_s)
        self._finish()
        if self._open_until is not None:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._closing,
                    timeout=timedelta(seconds=params.retry_window_s),
                    timeout_summary="retry window",
                )
            self._closing = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._finish()
        return self._report()

    async def _retry_round(self) -> None:
        """Re-run what failed: per architecture its build and all after it, or its failed checks."""
        assert self._params is not None
        runs = []
        for step in self._tasks.retry_plan(self._params.architectures, set(self._builds)):
            if step.rebuild:
                runs.append(self._architecture(step.architecture, first=step.first))
            else:
                runs.append(self._checks(step.architecture, self._builds[step.architecture], step.checks))
        await asyncio.gather(*runs)

    def _arch_specific(self, upload: UploadDescription, arch: str) -> bool:
        if upload.builds_for is not None:  # judged by a worker, with dpkg's tables
            return arch in upload.builds_for
        return builds_on(
            upload.architecture,
            arch,
            arch_all=False,
            matches=recorded_wildcard_matches,
            empty_means_any=False,
        )

    async def _architecture(self, arch: str, *, first: bool) -> None:
        params, upload = self._params, self._upload
        assert params is not None and upload is not None
        # Like Debian's buildds, arch:all packages are built once, with the first architecture.
        arch_all = first and "all" in upload.architecture
        if Check.BUILD not in params.tasks:
            return self._skip(arch, (*TASK_NAMES, *QA_CHECKS), "build not requested")
        if not (self._arch_specific(upload, arch) or arch_all):
            return self._skip(
                arch,
                (*TASK_NAMES, *QA_CHECKS),
                f"nothing to build for {arch} (Architecture: {' '.join(upload.architecture)})",
            )
        build = await self._run_task(
            "build",
            arch,
            ActivityName.BUILD_PACKAGE,
            BuildInput(
                source_artifact_id=params.source_artifact_id,
                source=upload.source,
                version=upload.version,
                suite=params.suite,
                architecture=arch,
                build_arch_all=arch_all,
            ),
            BuildResult,
        )
        if not isinstance(build, BuildResult) or build.result != TaskResult.SUCCESS:
            return self._skip(arch, (*CHECKS, *QA_CHECKS), "build failed" if build else "build errored")
        self._builds[arch] = build
        await self._checks(arch, build, (*CHECKS, *QA_CHECKS))
        return None

    async def _checks(self, arch: str, build: BuildResult, names: tuple[str, ...]) -> None:
        params, upload = self._params, self._upload
        assert params is not None and upload is not None
        check = CheckInput(
            source_artifact_id=params.source_artifact_id,
            binary_artifact_ids=build.binary_artifact_ids,
            source=upload.source,
            version=upload.version,
            suite=params.suite,
            architecture=arch,
        )
        checks = []
        if "lintian" in names:
            if Check.LINTIAN in params.tasks:
                checks.append(self._run_task("lintian", arch, ActivityName.RUN_LINTIAN, check, LintianResult))
            else:
                self._skip(arch, ("lintian",), "not requested")
        if "autopkgtest" in names:
            if Check.AUTOPKGTEST not in params.tasks:
                self._skip(arch, ("autopkgtest",), "not requested")
            elif not upload.has_tests:
                self._skip(arch, ("autopkgtest",), "the source declares no autopkgtest")
            else:
                checks.append(
                    self._run_task(
                        "autopkgtest", arch, ActivityName.RUN_AUTOPKGTEST, check, AutopkgtestResult
                    )
                )
        # The QA checks a run has reports for: those its submit named, in runs that know them.
        qa = [n for n in QA_CHECKS if n in names and task_key(n, arch) in self._tasks.reports]
        if qa:
            qa_input = QaCheckInput(**check.model_dump(), build_log_artifact_id=build.log_artifact_id)
            for name in qa:
                activity, result_type = QA_ACTIVITIES[name]
                checks.append(self._run_task(name, arch, activity, qa_input, result_type))
        await asyncio.gather(*checks)

    async def _run_task(
        self,
        name: str,
        arch: str,
        activity: str,
        arg: BuildInput | CheckInput,
        result_type: type[BuildResult] | type[CheckResult],
    ) -> BuildResult | CheckResult | None:
        """Run one tool activity, keeping its TaskReport current; None when it errored."""
        upload, params = self._upload, self._params
        assert upload is not None and params is not None
        label = f"{name} {upload.source} {upload.version} {arch}"
        timeout = self._timeouts.get(f"{name}/{arch}", calls.ceiling(self._policy, name))
        started = workflow.now()
        self._tasks.start(name, arch, summary=label, timeout_s=timeout)
        self._set_details()
        try:
            result = await calls.run_tool(
                name,
                arch,
                activity,
                arg,
                result_type,
                label=label,
                timeout_s=timeout,
                policy=self._policy,
                capability_queues=self._capability_queues,
            )
        except calls.ToolError as e:
            self._tasks.error(name, arch, message=e.message, tries=e.tries)
            self._set_details()
            if self._ends_with_tasks:
                await calls.record_task_error(
                    TaskErrorInput(
                        task_name=name,
                        subject=upload.source,
                        context=f"{params.suite}/{arch}",
                        workflow_id=workflow.info().workflow_id,
                        started_at=started,
                        duration_s=(workflow.now() - started).total_seconds(),
                        message=e.message,
                        tries=e.tries,
                    )
                )
            return None
        if isinstance(result, BuildResult):
            artifacts = [result.log_artifact_id, *result.binary_artifact_ids]
            if result.changes_artifact_id is not None:
                artifacts.append(result.changes_artifact_id)
        else:
            artifacts = [result.artifact_id]
        self._tasks.complete(
            name,
            arch,
            result=result.result,
            artifact_ids=artifacts,
            duration_s=result.duration_s,
            summary=result.summary,
            tries=result.tries,
            reused=result.reused,
        )
        self._set_details()
        return result
