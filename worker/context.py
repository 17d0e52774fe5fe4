"""The composition root of one command: its settings, where the services are, and the resources made from
them (Temporal client, database engine, artifact store) built once and only when first needed."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool
from temporalio.client import Client

from activities.storage.store import ArtifactStore
from models.db import make_engine, make_sessionmaker
from worker.connect import connect_temporal, resolve_database, resolve_temporal
from worker.settings import Settings


class Context:
    """What one `debflow` invocation uses, made from one `Settings`.

    Nothing connects before a command asks: `debflow import-suite` never needs Temporal, `debflow submit`
    of a bad .dsc fails before either service is reached. Where a service is not configured, the property
    raises `worker.connect.NotConfigured`. `close` releases what was made.
    """

    def __init__(self, settings: Settings, *, pool_size: int = 0) -> None:
        self.settings = settings
        # A long-running server (`debflow serve`) keeps connections; a command makes a few transactions.
        self.pool_size = pool_size
        self._client: Client | None = None
        self._engine: Engine | None = None

    @functools.cached_property
    def dev_stack(self) -> dict[str, str]:
        """What a running `debflow dev` recorded (empty without one), read once."""
        return self.settings.dev_stack()

    @functools.cached_property
    def database_url(self) -> str:
        return resolve_database(self.settings, self.dev_stack)

    @functools.cached_property
    def _temporal(self) -> tuple[dict[str, Any], str | None]:
        return resolve_temporal(self.settings, self.dev_stack)

    @property
    def temporal_arguments(self) -> dict[str, Any]:
        """Keyword arguments of Client.connect (target_host, namespace, TLS…)."""
        return self._temporal[0]

    @property
    def ui_url(self) -> str | None:
        """The Temporal Web UI, when a dev stack runs it."""
        return self._temporal[1]

    async def temporal(self) -> Client:
        if self._client is None:
            self._client = await connect_temporal(self.temporal_arguments)
        return self._client

    @property
    def engine(self) -> Engine:
        """No pool unless asked for: a command makes a few short transactions."""
        if self._engine is None:
            if self.pool_size:
                self._engine = make_engine(self.database_url, pool_size=self.pool_size, max_overflow=0)
            else:
                self._engine = make_engine(self.database_url, poolclass=NullPool)
        return self._engine

    @functools.cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @functools.cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.settings.store_dir, self.sessions)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@contextlib.contextmanager
def database(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions over a short-lived engine, for a caller holding a database URL but no Context."""
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def artifact_store(settings: Settings, database_url: str) -> Iterator[ArtifactStore]:
    """The settings' store over a short-lived engine (see `database`)."""
    with database(database_url) as sessions:
        yield ArtifactStore(settings.store_dir, sessions)
