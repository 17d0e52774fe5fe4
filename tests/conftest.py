"""One Temporal dev server and one PostgreSQL per test session; a fresh task queue per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.storage.store import ArtifactStore
from models.db import make_engine, make_sessionmaker
from worker.main import build_worker
from worker.postgres import temporary_database
from worker.settings import PROJECT_ROOT, Settings
from worker.temporal_dev import TemporalDevConfig, temporal_binary
from workflows import search_attributes as sa

TABLES = (
    "file",
    "artifact",
    "file_in_artifact",
    "artifact_relation",
    "collection",
    "collection_item",
    "task_history",
)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with temporary_database("debflow-test-pg-") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="debflow-test-state-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(state_dir: Path, database_url: str, temporal_env: WorkflowEnvironment) -> Settings:
    return Settings(
        state_dir=state_dir,
        database_url=database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=f"test-{uuid.uuid4().hex[:12]}",
        heartbeat_interval_s=1,
        max_concurrent_activities=4,
        # Chosen explicitly: the fast tests build trusted examples on the host (tests/test_unshare.py
        # uses the isolated executor), and their runs end as soon as their tasks have.
        executor="host",
        retry_window_s=0,
        # A file missing from a test's mirror stays missing: 1 s, 2 s, 4 s between tries, not minutes.
        missing_file_backoff_s=1,
    )


@pytest.fixture
def store(settings: Settings, sessions: sessionmaker[Session]) -> ArtifactStore:
    return ArtifactStore(settings.store_dir, sessions)


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    config = TemporalDevConfig.load(PROJECT_ROOT / "temporal-dev.yaml")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=sa.ALL,
        dev_server_extra_args=config.tuning_args(),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture
async def worker(client: Client, settings: Settings, database_url: str) -> AsyncIterator[None]:
    """An in-process worker on this test's own task queue."""
    parts = build_worker(client, settings, database_url)
    try:
        async with parts:
            yield
    finally:
        parts.close()


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def store_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture(scope="session")
def example_sources() -> Iterator[dict[str, Path]]:
    """The example packages as .dsc + tarball, built with dpkg-source -b once per session."""
    from client.demo import EXAMPLES, build_source_packages

    target = Path(tempfile.mkdtemp(prefix="debflow-test-src-"))
    dscs = build_source_packages(target)
    yield {name: next(d for d in dscs if d.name.startswith(f"{name}_")) for name in EXAMPLES}
    shutil.rmtree(target, ignore_errors=True)


def subprocess_env(settings: Settings) -> dict[str, str]:
    """The environment a `debflow` subprocess needs to use this test's services."""
    return {
        **os.environ,
        "DEBFLOW_STATE_DIR": str(settings.state_dir),
        "DEBFLOW_DATABASE_URL": settings.database_url or "",
        "TEMPORAL_ADDRESS": settings.temporal_address or "",
        "DEBFLOW_TASK_QUEUE": settings.task_queue,
        "DEBFLOW_EXECUTOR": settings.executor,
        "DEBFLOW_RETRY_WINDOW_S": str(settings.retry_window_s),
    }
