"""The client's way to stored results: the reading services over the configured database and store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from activities.campaigns.campaign_verdicts import campaign_verdicts
from activities.storage.artifact_views import ArtifactViews
from activities.storage.store import ArtifactStore
from models.campaign import TargetVerdict
from models.db import make_engine, make_sessionmaker
from worker.connect import NotConfigured, resolve_database
from worker.settings import Settings


@contextlib.contextmanager
def artifact_views(settings: Settings) -> Iterator[ArtifactViews]:
    """One short-lived engine (no pool: a command makes a few queries); raises NotConfigured."""
    engine = make_engine(resolve_database(settings), poolclass=NullPool)
    try:
        sessions = make_sessionmaker(engine)
        yield ArtifactViews(sessions, ArtifactStore(settings.store_dir, sessions))
    finally:
        engine.dispose()


def check_data(settings: Settings, artifact_ids: list[int]) -> dict[int, tuple[str, dict[str, Any]]] | str:
    """Category and data of the artifacts, or why they cannot be read (a report prints without them)."""
    try:
        with artifact_views(settings) as views:
            return views.data_of(artifact_ids)
    except (NotConfigured, SQLAlchemyError, OSError) as e:
        return f"{type(e).__name__}: {e}".splitlines()[0]


def stored_verdicts(settings: Settings, campaign_id: str) -> list[TargetVerdict] | str:
    """Every stored verdict of a campaign, or why they cannot be read."""
    try:
        with artifact_views(settings) as views:
            return campaign_verdicts(views.sessions, campaign_id)
    except (NotConfigured, SQLAlchemyError, OSError) as e:
        return f"{type(e).__name__}: {e}".splitlines()[0]
