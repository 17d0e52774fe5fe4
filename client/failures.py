"""How a run that did not complete is told: one line naming what ended it, never a traceback."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    TerminatedError,
    TimeoutError,
)

# The statuses of a run that ended without its result.
ENDED_BADLY = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "was cancelled",
    WorkflowExecutionStatus.TERMINATED: "was terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}
# The texts the SDK puts in when the server gave no reason: they say nothing the verb does not.
_DEFAULT_MESSAGES = {"Workflow cancelled", "Workflow terminated", "Cancelled", "Workflow timed out"}


class RunEnded(RuntimeError):
    """A run failed, was cancelled, terminated or timed out; the message is the line to print."""


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _chain(error: BaseException | None) -> list[BaseException]:
    """The error and its causes, outermost first (Temporal failures nest through `.cause`)."""
    found: list[BaseException] = []
    while error is not None and error not in found:
        found.append(error)
        error = error.cause if isinstance(error, FailureError) else error.__cause__
    return found


def _where(chain: list[BaseException]) -> str:
    """Which child run and activity the failure came from, as far as the chain tells."""
    places = []
    for error in chain:
        if isinstance(error, ChildWorkflowError):
            places.append(f"child run {error.workflow_id}")
        elif isinstance(error, ActivityError):
            places.append(f"activity {error.activity_type}")
    return f" (in {', '.join(reversed(places))})" if places else ""


def _reason(error: BaseException) -> str:
    """What one failure says, without the SDK's placeholder texts."""
    message = error.message if isinstance(error, FailureError) else str(error)
    message = _one_line(message)
    if message in _DEFAULT_MESSAGES:
        return ""
    if isinstance(error, ApplicationError) and error.type and error.type not in message:
        # A Python exception raised in an activity arrives with its class name as the type.
        return f"{error.type}: {message}" if message else error.type
    return message


def describe_failure(workflow_id: str, error: WorkflowFailureError) -> str:
    """One line: what ended the run, the innermost reason, and where it came from."""
    chain = _chain(error.cause)
    if not chain:
        return f"{workflow_id} failed: {_one_line(str(error))}"
    outermost, innermost = chain[0], chain[-1]
    # The run's own cancellation, termination or time-out is its outermost cause.
    for ended, verb in ((TerminatedError, "was terminated"), (CancelledError, "was cancelled")):
        if isinstance(outermost, ended):
            reason = _reason(outermost)
            return f"{workflow_id} {verb}" + (f": {reason}" if reason else "")
    if isinstance(outermost, TimeoutError):
        return f"{workflow_id} timed out"
    # A child run or an activity ended it: say how, with the innermost message.
    if isinstance(innermost, TerminatedError):
        what = "a run it waited for was terminated"
    elif isinstance(innermost, CancelledError):
        what = "a run it waited for was cancelled"
    elif isinstance(innermost, TimeoutError):
        kind = innermost.type.name.lower().replace("_", "-") if innermost.type else "its"
        what = f"{kind} timeout"
    else:
        what = ""
    reason = _reason(innermost)
    text = "; ".join(part for part in (what, reason) if part) or type(innermost).__name__
    return f"{workflow_id} failed: {text}{_where(chain)}"


def run_ended(workflow_id: str, error: WorkflowFailureError) -> RunEnded:
    return RunEnded(describe_failure(workflow_id, error))


@contextlib.contextmanager
def told_in_one_line(workflow_id: str) -> Iterator[None]:
    """Turn the SDK's failure of a run's result into RunEnded with its one line."""
    try:
        yield
    except WorkflowFailureError as e:
        raise run_ended(workflow_id, e) from None


async def raise_if_ended_badly(client: Client, workflow_id: str) -> None:
    """After following a run: RunEnded if it failed, was cancelled, terminated or timed out."""
    handle = client.get_workflow_handle(workflow_id)
    if (await handle.describe()).status in ENDED_BADLY:
        with told_in_one_line(workflow_id):
            await handle.result()
