"""The client's way to stored results: the reading services over the command's database and store."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from activities.campaigns.campaign_verdicts import campaign_verdicts
from activities.storage.artifact_views import ArtifactViews
from models.campaign import TargetVerdict
from worker.connect import NotConfigured
from worker.context import Context


def artifact_views(context: Context) -> ArtifactViews:
    """Raises NotConfigured without a database."""
    return ArtifactViews(context.sessions, context.store)


def check_data(context: Context, artifact_ids: list[int]) -> dict[int, tuple[str, dict[str, Any]]] | str:
    """Category and data of the artifacts, or why they cannot be read (a report prints without them)."""
    try:
        return artifact_views(context).data_of(artifact_ids)
    except (NotConfigured, SQLAlchemyError, OSError) as e:
        return f"{type(e).__name__}: {e}".splitlines()[0]


def stored_verdicts(context: Context, campaign_id: str) -> list[TargetVerdict] | str:
    """Every stored verdict of a campaign, or why they cannot be read."""
    try:
        return campaign_verdicts(context.sessions, campaign_id)
    except (NotConfigured, SQLAlchemyError, OSError) as e:
        return f"{type(e).__name__}: {e}".splitlines()[0]
