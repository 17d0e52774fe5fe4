"""UploadPipeline: build an upload per architecture, then lint and test what was built."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.payloads import (
        AutopkgtestResult,
        BuildInput,
        BuildResult,
        Check,
        CheckInput,
        CheckResult,
        DescribeUploadInput,
        LintianResult,
        PipelineProgress,
        TaskReport,
        TaskResult,
        TaskStatus,
        UploadDescription,
        UploadPipelineInput,
        UploadReport,
    )
    from workflows import search_attributes as sa
    from workflows.policies import DB_RETRY, TOOL_RETRY

TASK_NAMES = ("build", "lintian", "autopkgtest")


def builds_on(architecture_field: list[str], arch: str) -> bool:
    """Whether a source with this Architecture field has arch-specific binaries for `arch`."""
    return any(w in ("any", arch, "linux-any", f"any-{arch}") for w in architecture_field)


def _failure_message(error: ActivityError) -> str:
    """The innermost cause: the activity's own message, or the timeout that ended it."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause)


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

    @workflow.query
    def progress(self) -> PipelineProgress:
        upload = self._upload
        return PipelineProgress(
            source=upload.source if upload else "",
            version=upload.version if upload else "",
            tasks=list(self._tasks.values()),
        )

    def _set(self, key: str, **changes: object) -> None:
        self._tasks[key] = self._tasks[key].model_copy(update=changes)
        running = [f"- running: {t.summary}" for t in self._tasks.values() if t.status == TaskStatus.RUNNING]
        done = sum(t.finished for t in self._tasks.values())
        workflow.set_current_details("\n".join([*running, f"- {done} of {len(self._tasks)} tasks finished"]))

    def _skip(self, arch: str, names: tuple[str, ...], reason: str) -> None:
        for name in names:
            self._set(f"{name}/{arch}", status=TaskStatus.SKIPPED, result=TaskResult.SKIPPED, summary=reason)

    @workflow.run
    async def run(self, params: UploadPipelineInput) -> UploadReport:
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
        for arch in params.architectures:
            for name in TASK_NAMES:
                self._tasks[f"{name}/{arch}"] = TaskReport(
                    name=name, architecture=arch, status=TaskStatus.PENDING
                )
        await asyncio.gather(
            *(
                self._architecture(params, upload, arch, first=index == 0)
                for index, arch in enumerate(params.architectures)
            )
        )
        tasks = list(self._tasks.values())
        overall = overall_result(tasks)
        workflow.upsert_search_attributes([sa.RESULT.value_set(str(overall))])
        workflow.set_current_details(f"finished: {overall}")
        return UploadReport(
            workflow_id=workflow.info().workflow_id,
            source=upload.source,
            version=upload.version,
            suite=params.suite,
            architectures=params.architectures,
            result=overall,
            tasks=tasks,
        )

    async def _architecture(
        self, params: UploadPipelineInput, upload: UploadDescription, arch: str, *, first: bool
    ) -> None:
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
            params.timeouts.build_s,
            params.timeouts.heartbeat_s,
        )
        if not isinstance(build, BuildResult) or build.result != TaskResult.SUCCESS:
            return self._skip(arch, ("lintian", "autopkgtest"), "build failed" if build else "build errored")
        check = CheckInput(
            upload_artifact_id=params.upload_artifact_id,
            binary_artifact_ids=build.binary_artifact_ids,
            source=upload.source,
            version=upload.version,
            suite=params.suite,
            architecture=arch,
        )
        checks = []
        if Check.LINTIAN in params.checks:
            checks.append(
                self._run_task(
                    "lintian",
                    arch,
                    "run_lintian",
                    check,
                    LintianResult,
                    params.timeouts.lintian_s,
                    params.timeouts.heartbeat_s,
                )
            )
        else:
            self._skip(arch, ("lintian",), "not requested")
        if Check.AUTOPKGTEST not in params.checks:
            self._skip(arch, ("autopkgtest",), "not requested")
        elif not upload.has_tests:
            self._skip(arch, ("autopkgtest",), "the source declares no autopkgtest")
        else:
            checks.append(
                self._run_task(
                    "autopkgtest",
                    arch,
                    "run_autopkgtest",
                    check,
                    AutopkgtestResult,
                    params.timeouts.autopkgtest_s,
                    params.timeouts.heartbeat_s,
                )
            )
        await asyncio.gather(*checks)
        return None

    async def _run_task(
        self,
        name: str,
        arch: str,
        activity: str,
        arg: BuildInput | CheckInput,
        result_type: type[BuildResult] | type[CheckResult],
        timeout_s: float,
        heartbeat_s: float,
    ) -> BuildResult | CheckResult | None:
        """Run one tool activity, keeping its TaskReport current; None when it errored."""
        key = f"{name}/{arch}"
        upload = self._upload
        assert upload is not None
        label = f"{name} {upload.source} {upload.version} {arch}"
        self._set(key, status=TaskStatus.RUNNING, summary=label)
        try:
            result: BuildResult | CheckResult = await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=timedelta(seconds=timeout_s),
                heartbeat_timeout=timedelta(seconds=heartbeat_s),
                retry_policy=TOOL_RETRY,
                summary=label,
            )
        except ActivityError as e:
            self._set(key, status=TaskStatus.ERROR, result=TaskResult.ERROR, summary=_failure_message(e))
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
        )
        return result
