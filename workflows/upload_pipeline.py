"""UploadPipeline: build an upload per architecture, then lint and test what was built.

Once every task has a final state the run publishes its report (the `report` and `progress` queries,
the DebflowResult search attribute) and stays open for `retry_window_s`: the `retry_failed` update
re-runs the failed and errored tasks and what depends on them, as often as asked, and the `close`
signal ends the window early. The workflow result is the report as the window closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    RetryState,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeout,
)
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from models.payloads import (
        AutopkgtestResult,
        BuildInput,
        BuildResult,
        Check,
        CheckInput,
        CheckResult,
        DescribeUploadInput,
        EstimateTimeoutsInput,
        LintianResult,
        PipelineProgress,
        TaskAttempt,
        TaskReport,
        TaskResult,
        TaskStatus,
        TimeoutEstimates,
        UploadDescription,
        UploadPipelineInput,
        UploadReport,
    )
    from workflows import queues
    from workflows import search_attributes as sa
    from workflows.policies import DB_RETRY, ESTIMATE_RETRY, TOOL_RETRY

TASK_NAMES = ("build", "lintian", "autopkgtest")
CHECKS = ("lintian", "autopkgtest")
# Runs recorded before issue 5 (tests/histories/upload-pipeline-*-debflow.json) took none of these paths:
# timeouts from task history, the retry window and retry_failed.
RETRIES_PATCH = "timeouts-from-history-and-retry-window"
# Runs recorded before worker pools ran every activity on the workflow's own task queue.
QUEUES_PATCH = "capability-queues"


def builds_on(architecture_field: list[str], arch: str) -> bool:
    """Whether a source with this Architecture field has arch-specific binaries for `arch`."""
    return any(w in ("any", arch, "linux-any", f"any-{arch}") for w in architecture_field)


def _failure_message(error: ActivityError) -> str:
    """The innermost cause: the activity's own message, or the timeout that ended it."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause)


def _queue(task: str, arch: str) -> str:
    control = workflow.info().task_queue
    if task == "build":
        return queues.build_queue(control, arch)
    if task == "lintian":
        return queues.lintian_queue(control)
    return queues.test_queue(control, arch)


def _capability(task: str, arch: str) -> str:
    return {"build": f"build:{arch}", "lintian": "lintian"}.get(task, f"test:{arch}")


def overall_result(tasks: list[TaskReport]) -> TaskResult:
    results = {t.result for t in tasks}
    if TaskResult.ERROR in results:
        return TaskResult.ERROR
    if TaskResult.FAILURE in results:
        return TaskResult.FAILURE
    return TaskResult.SUCCESS


@workflow.defn(name="UploadPipeline")
class UploadPipelineWorkflow:
    """One upload: describe it, build per architecture, run lintian and autopkgtest on each build."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskReport] = {}
        self._upload: UploadDescription | None = None
        self._params: UploadPipelineInput | None = None
        self._timeouts: dict[str, float] = {}
        self._builds: dict[str, BuildResult] = {}  # architecture → its last successful build
        self._finished = False
        self._closing = False
        self._retrying = False
        self._rounds = 0
        self._open_until: datetime | None = None
        self._capability_queues = False

    @workflow.query
    def progress(self) -> PipelineProgress:
        upload = self._upload
        return PipelineProgress(
            source=upload.source if upload else "",
            version=upload.version if upload else "",
            tasks=list(self._tasks.values()),
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
        """Re-run the failed and errored tasks and the tasks depending on them; returns the new report."""
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
        if self._closing:
            raise ValueError("the run no longer accepts retries (its retry window closed)")
        if not self._failed():
            raise ValueError("no task failed or errored: there is nothing to retry")

    def _failed(self) -> list[str]:
        return [k for k, t in self._tasks.items() if t.result in (TaskResult.FAILURE, TaskResult.ERROR)]

    def _set(self, key: str, *, tries: int | None = None, reused: bool = False, **changes: object) -> None:
        """Update a task's report; a task reaching a final state also gets an entry in its attempts."""
        task = self._tasks[key] = self._tasks[key].model_copy(update=changes)
        if task.finished and "status" in changes:
            attempt = TaskAttempt(
                number=len(task.attempts) + 1,
                status=task.status,
                result=task.result,
                artifact_ids=task.artifact_ids,
                duration_s=task.duration_s,
                summary=task.summary,
                tries=tries,
                reused=reused,
            )
            self._tasks[key] = task.model_copy(update={"attempts": [*task.attempts, attempt]})
        running = [f"- running: {t.summary}" for t in self._tasks.values() if t.status == TaskStatus.RUNNING]
        done = sum(t.finished for t in self._tasks.values())
        workflow.set_current_details("\n".join([*running, f"- {done} of {len(self._tasks)} tasks finished"]))

    def _skip(self, arch: str, names: tuple[str, ...], reason: str) -> None:
        for name in names:
            task = self._tasks[f"{name}/{arch}"]
            if task.status == TaskStatus.SKIPPED and task.summary == reason:
                continue  # skipped again for the same reason in a retry round: not a new attempt
            self._set(f"{name}/{arch}", status=TaskStatus.SKIPPED, result=TaskResult.SKIPPED, summary=reason)

    def _report(self) -> UploadReport:
        upload, params = self._upload, self._params
        tasks = list(self._tasks.values())
        return UploadReport(
            workflow_id=workflow.info().workflow_id,
            source=upload.source if upload else "",
            version=upload.version if upload else "",
            suite=params.suite if params else "",
            architectures=params.architectures if params else [],
            result=overall_result(tasks),
            tasks=tasks,
            retry_rounds=self._rounds,
            accepting_retries_until=self._open_until if not self._closing else None,
            upload_artifact_id=params.upload_artifact_id if params else None,
        )

    def _finish(self) -> None:
        overall = overall_result(list(self._tasks.values()))
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
        upload = self._upload = await workflow.execute_activity(
            "describe_upload",
            DescribeUploadInput(upload_artifact_id=params.upload_artifact_id),
            result_type=UploadDescription,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=DB_RETRY,
            summary=f"describe upload {params.upload_artifact_id}",
        )
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
        if current:
            self._timeouts = await self._estimate_timeouts(params, upload)
        for arch in params.architectures:
            for name in TASK_NAMES:
                self._tasks[f"{name}/{arch}"] = TaskReport(
                    name=name, architecture=arch, status=TaskStatus.PENDING
                )
        await asyncio.gather(
            *(self._architecture(arch, first=i == 0) for i, arch in enumerate(params.architectures))
        )
        if current and params.retry_window_s > 0:
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

    async def _estimate_timeouts(
        self, params: UploadPipelineInput, upload: UploadDescription
    ) -> dict[str, float]:
        """Timeouts per task from task history; the configured ones if the history cannot be read."""
        try:
            estimates: TimeoutEstimates = await workflow.execute_activity(
                "estimate_timeouts",
                EstimateTimeoutsInput(
                    source=upload.source,
                    suite=params.suite,
                    architectures=params.architectures,
                    defaults=params.timeouts,
                ),
                result_type=TimeoutEstimates,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=ESTIMATE_RETRY,
                summary=f"estimate timeouts of {upload.source}",
            )
        except ActivityError as e:
            if is_cancelled_exception(e):
                raise
            workflow.logger.warning("task history unavailable, using the configured timeouts: %s", e)
            return {}
        return estimates.timeouts

    async def _retry_round(self) -> None:
        """Per architecture: a failed build re-runs with everything after it; else the failed checks."""
        assert self._params is not None
        failed = set(self._failed())
        runs = []
        for index, arch in enumerate(self._params.architectures):
            if f"build/{arch}" in failed:
                runs.append(self._architecture(arch, first=index == 0))
            elif arch in self._builds:
                names = tuple(n for n in CHECKS if f"{n}/{arch}" in failed)
                if names:
                    runs.append(self._checks(arch, self._builds[arch], names))
        await asyncio.gather(*runs)

    async def _architecture(self, arch: str, *, first: bool) -> None:
        params, upload = self._params, self._upload
        assert params is not None and upload is not None
        # Like Debian's buildds, arch:all packages are built once, with the first architecture.
        arch_all = first and "all" in upload.architecture
        if Check.BUILD not in params.checks:
            return self._skip(arch, TASK_NAMES, "build not requested")
        if not (builds_on(upload.architecture, arch) or arch_all):
            return self._skip(
                arch,
                TASK_NAMES,
                f"nothing to build for {arch} (Architecture: {' '.join(upload.architecture)})",
            )
        build = await self._run_task(
            "build",
            arch,
            "build_package",
            BuildInput(
                upload_artifact_id=params.upload_artifact_id,
                source=upload.source,
                version=upload.version,
                suite=params.suite,
                architecture=arch,
                build_arch_all=arch_all,
            ),
            BuildResult,
        )
        if not isinstance(build, BuildResult) or build.result != TaskResult.SUCCESS:
            return self._skip(arch, CHECKS, "build failed" if build else "build errored")
        self._builds[arch] = build
        await self._checks(arch, build, CHECKS)
        return None

    async def _checks(self, arch: str, build: BuildResult, names: tuple[str, ...]) -> None:
        params, upload = self._params, self._upload
        assert params is not None and upload is not None
        check = CheckInput(
            upload_artifact_id=params.upload_artifact_id,
            binary_artifact_ids=build.binary_artifact_ids,
            source=upload.source,
            version=upload.version,
            suite=params.suite,
            architecture=arch,
        )
        checks = []
        if "lintian" in names:
            if Check.LINTIAN in params.checks:
                checks.append(self._run_task("lintian", arch, "run_lintian", check, LintianResult))
            else:
                self._skip(arch, ("lintian",), "not requested")
        if "autopkgtest" in names:
            if Check.AUTOPKGTEST not in params.checks:
                self._skip(arch, ("autopkgtest",), "not requested")
            elif not upload.has_tests:
                self._skip(arch, ("autopkgtest",), "the source declares no autopkgtest")
            else:
                checks.append(
                    self._run_task("autopkgtest", arch, "run_autopkgtest", check, AutopkgtestResult)
                )
        await asyncio.gather(*checks)

    def _timeout(self, name: str, arch: str) -> float:
        assert self._params is not None
        defaults = self._params.timeouts
        configured = {
            "build": defaults.build_s,
            "lintian": defaults.lintian_s,
            "autopkgtest": defaults.autopkgtest_s,
        }
        return self._timeouts.get(f"{name}/{arch}", configured[name])

    async def _run_task(
        self,
        name: str,
        arch: str,
        activity: str,
        arg: BuildInput | CheckInput,
        result_type: type[BuildResult] | type[CheckResult],
    ) -> BuildResult | CheckResult | None:
        """Run one tool activity, keeping its TaskReport current; None when it errored."""
        key = f"{name}/{arch}"
        upload, params = self._upload, self._params
        assert upload is not None and params is not None
        label = f"{name} {upload.source} {upload.version} {arch}"
        timeout = self._timeout(name, arch)
        self._set(key, status=TaskStatus.RUNNING, summary=label, timeout_s=timeout)
        routing: dict[str, Any] = {}
        if self._capability_queues:
            routing = {
                "task_queue": _queue(name, arch),
                "schedule_to_start_timeout": timedelta(seconds=params.timeouts.queue_wait_s),
            }
        try:
            result: BuildResult | CheckResult = await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=timedelta(seconds=timeout),
                **routing,
                heartbeat_timeout=timedelta(seconds=params.timeouts.heartbeat_s),
                retry_policy=TOOL_RETRY,
                # A cancelled run waits until its tools' process groups are killed.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=label,
            )
        except ActivityError as e:
            if is_cancelled_exception(e):
                raise
            exhausted = e.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
            message = _failure_message(e)
            if isinstance(e.cause, TemporalTimeout) and e.cause.type == TimeoutType.SCHEDULE_TO_START:
                message = (
                    f"no worker took the {name} task from queue {routing['task_queue']} within "
                    f"{params.timeouts.queue_wait_s:g} s: start one with "
                    f"`debflow worker --capabilities {_capability(name, arch)}`"
                )
            self._set(
                key,
                status=TaskStatus.ERROR,
                result=TaskResult.ERROR,
                summary=message,
                tries=TOOL_RETRY.maximum_attempts if exhausted else None,
            )
            return None
        if isinstance(result, BuildResult):
            artifacts = [result.log_artifact_id, *result.binary_artifact_ids]
            if result.changes_artifact_id is not None:
                artifacts.append(result.changes_artifact_id)
        else:
            artifacts = [result.artifact_id]
        self._set(
            key,
            status=TaskStatus.COMPLETED,
            result=result.result,
            artifact_ids=artifacts,
            duration_s=result.duration_s,
            summary=result.summary,
            tries=result.tries,
            reused=result.reused,
        )
        return result
