"""The activity calls of the UploadPipeline workflow: routing, timeouts and what an error means.

Runs inside the workflow (deterministic: no I/O, `workflow.now()` for time).
"""

from __future__ import annotations

from datetime import timedelta
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
        BuildInput,
        BuildResult,
        CheckInput,
        CheckResult,
        DescribeUploadInput,
        EstimateTimeoutsInput,
        TaskErrorInput,
        TaskTimeouts,
        TimeoutEstimates,
        UploadDescription,
        UploadPipelineInput,
    )
    from models.vocabulary import ActivityName
    from workflows import queues
    from workflows.policies import DB_RETRY, ESTIMATE_RETRY, TOOL_RETRY


def failure_message(error: ActivityError) -> str:
    """The innermost cause: the activity's own message, or the timeout that ended it."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause)


def task_queue(task: str, arch: str) -> str:
    control = workflow.info().task_queue
    if task == "build":
        return queues.build_queue(control, arch)
    if task in ("lintian", "debdiff", "blhc"):  # static checks of files: lintian's host capability
        return queues.lintian_queue(control)
    return queues.test_queue(control, arch)


def capability(task: str, arch: str) -> str:
    return {"build": f"build:{arch}", "lintian": "lintian", "debdiff": "lintian", "blhc": "lintian"}.get(
        task, f"test:{arch}"
    )


def ceiling(policy: TaskTimeouts, task: str) -> float:
    return {
        "build": policy.build_s,
        "lintian": policy.lintian_s,
        "autopkgtest": policy.autopkgtest_s,
        # The QA checks take the ceilings of their kind: static checks lintian's, piuparts a test's.
        "debdiff": policy.lintian_s,
        "blhc": policy.lintian_s,
        "piuparts": policy.autopkgtest_s,
    }[task]


async def describe_upload(params: UploadPipelineInput, *, with_architectures: bool) -> UploadDescription:
    """The source's fields; `with_architectures`: also which requested architectures it builds on."""
    described: UploadDescription = await workflow.execute_activity(
        ActivityName.DESCRIBE_UPLOAD,
        DescribeUploadInput(
            source_artifact_id=params.source_artifact_id,
            architectures=params.architectures if with_architectures else [],
        ),
        result_type=UploadDescription,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=DB_RETRY,
        summary=f"describe upload {params.source_artifact_id}",
    )
    return described


async def estimate_timeouts(
    params: UploadPipelineInput, upload: UploadDescription, defaults: TaskTimeouts | None
) -> TimeoutEstimates | None:
    """Timeouts per task from task history (and, given no `defaults`, the worker's policy); None if
    the history cannot be read."""
    try:
        estimates: TimeoutEstimates = await workflow.execute_activity(
            ActivityName.ESTIMATE_TIMEOUTS,
            EstimateTimeoutsInput(
                source=upload.source,
                suite=params.suite,
                architectures=params.architectures,
                defaults=defaults,
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
        return None
    return estimates


class ToolError(Exception):
    """A tool activity that errored: the message for its report and the tries it took."""

    def __init__(self, message: str, tries: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.tries = tries


async def run_tool(
    name: str,
    arch: str,
    activity: str,
    arg: BuildInput | CheckInput,
    result_type: type[BuildResult] | type[CheckResult],
    *,
    label: str,
    timeout_s: float,
    policy: TaskTimeouts,
    capability_queues: bool,
) -> BuildResult | CheckResult:
    """Run one tool activity; raises ToolError when it errored (a cancellation propagates)."""
    routing: dict[str, Any] = {}
    if capability_queues:
        routing = {
            "task_queue": task_queue(name, arch),
            "schedule_to_start_timeout": timedelta(seconds=policy.queue_wait_s),
        }
    try:
        result: BuildResult | CheckResult = await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=timedelta(seconds=timeout_s),
            **routing,
            heartbeat_timeout=timedelta(seconds=policy.heartbeat_s),
            retry_policy=TOOL_RETRY,
            # A cancelled run waits until its tools' process groups are killed.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=label,
        )
    except ActivityError as e:
        if is_cancelled_exception(e):
            raise
        exhausted = e.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
        message = failure_message(e)
        if isinstance(e.cause, TemporalTimeout) and e.cause.type == TimeoutType.SCHEDULE_TO_START:
            message = (
                f"no worker took the {name} task from queue {routing['task_queue']} within "
                f"{policy.queue_wait_s:g} s: start one with "
                f"`debflow worker --capabilities {capability(name, arch)}`"
            )
        raise ToolError(message, TOOL_RETRY.maximum_attempts if exhausted else None) from e
    return result


async def record_task_error(error: TaskErrorInput) -> None:
    """The errored task's task-history row (result `error`: `debflow status` counts them). Best effort:
    a database that stays down loses the row, not the run."""
    try:
        await workflow.execute_activity(
            ActivityName.RECORD_TASK_ERROR,
            error,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
            summary=f"record the error of {error.task_name} {error.subject} {error.context}",
        )
    except ActivityError as e:
        if is_cancelled_exception(e):
            raise
        workflow.logger.warning("could not record the error of %s: %s", error.task_name, e)
