"""What the debci API's tests share: a synthetic imported suite, a requester made with the real key
service, and the counts that show a refused call left nothing behind."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from activities.services.api_keys import add_key, authenticate
from activities.suites.suite import import_suite
from models.debci import Requester
from support.synthetic_suite import write_suite
from worker.settings import Settings


def synthetic_suite(
    root: Path, sessions: sessionmaker[Session], prefix: str, dependants: int
) -> tuple[str, str]:
    """An imported synthetic suite: (its name, the trigger source); dependants `TRIGGER-user0000`…"""
    trigger = f"lib{prefix}{uuid.uuid4().hex[:6]}"
    name = f"{prefix}-{trigger}"
    files = write_suite(root, trigger, dependants=dependants)
    import_suite(
        sessions=sessions,
        name=name,
        sources=files.sources,
        packages=[files.packages],
        release=files.release,
        keyring=files.keyring,
    )
    return name, trigger


def requester(sessions: sessionmaker[Session], prefix: str, *, admin: bool = False) -> Requester:
    """A new key's requester, made and read back through the key service."""
    found = authenticate(sessions, add_key(sessions, f"{prefix}-{uuid.uuid4().hex[:6]}", admin=admin))
    assert found is not None
    return found


def job_rows(engine: Engine) -> tuple[int, int]:
    """How many jobs and requests are stored."""
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM debci_job")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM debci_request")).scalar_one(),
        )


async def debci_workflows(client: Client, suite: str) -> int:
    """How many job batches of a suite Temporal knows."""
    return (await client.count_workflows(f'DebflowKind = "debci" AND DebflowSuite = "{suite}"')).count


@pytest.fixture
async def no_batches_left(client: Client, settings: Settings) -> AsyncIterator[None]:
    """Job batches a test left pending (no worker ran them) are terminated after it: the site's live view
    and later tests of the same Temporal server must not find them running."""
    yield
    query = f'DebflowKind = "debci" AND TaskQueue = "{settings.task_queue}" AND ExecutionStatus = "Running"'
    async for found in client.list_workflows(query):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(found.id).terminate("the test is over")
