"""What every `debflow` command shares: the terminal, one-line errors, and the invocation's context."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import typer
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.debian.dsc import BadUpload
from activities.tools.process import ToolMissing
from client.api import AlreadySubmitted, RetryRefused
from client.failures import RunEnded, describe_failure
from client.output import make_console
from models import identifiers
from worker.connect import NotConfigured
from worker.context import Context

console = make_console()
errors = make_console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def context_of(ctx: typer.Context) -> Context:
    """The invocation's context, which the `debflow` callback (client/cli.py) built."""
    context = ctx.find_object(Context)
    assert context is not None, "a debflow command runs under the debflow app"
    return context


class LookupFailed(LookupError):
    """A workflow id, suite or package that does not exist."""


async def describe(client: Client, workflow_id: str) -> str:
    """The workflow type of a run; one clear error when there is no such run."""
    identifiers.check_workflow_id(workflow_id)
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).workflow_type
    except RPCError as e:
        if e.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise LookupFailed(f"no run with workflow id {identifiers.preview(workflow_id, 200)!r}") from None
        raise


def run(coroutine: Coroutine[Any, Any, int]) -> int:
    """The command's exit code; what the user can act on becomes one `error:` line."""
    try:
        return int(asyncio.run(coroutine))
    except (
        BadUpload,
        ToolMissing,
        NotConfigured,
        AlreadySubmitted,
        LookupFailed,
        RetryRefused,
        identifiers.TooLong,
    ) as e:
        raise fail(str(e)) from None
    except RunEnded as e:
        raise fail(str(e), code=1) from None
    except WorkflowFailureError as e:  # a run's result awaited without its id at hand
        raise fail(describe_failure("the run", e), code=1) from None
    except WorkflowUpdateFailedError as e:
        raise fail(f"retry refused: {e.cause.message if e.cause else e}") from None  # type: ignore[attr-defined]
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise fail(f"not found: {e.message}") from None
        raise
    except KeyboardInterrupt:
        return 130
