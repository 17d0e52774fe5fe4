"""Finding the services: explicit settings, Temporal envconfig, or what `debflow dev` recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from worker.settings import Settings
from worker.temporal_dev import TemporalDevConfig


class NotConfigured(RuntimeError):
    """No service is configured and no dev stack is running."""


@dataclass(frozen=True)
class Endpoints:
    temporal: dict[str, Any]  # keyword arguments of Client.connect
    database_url: str
    ui_url: str | None


def external_temporal(settings: Settings) -> dict[str, Any] | None:
    """Connection arguments when TEMPORAL_ADDRESS, a profile or DEBFLOW_TEMPORAL_ADDRESS names a server."""
    profile = ClientConfigProfile.load(profile=settings.temporal_profile)
    config: dict[str, Any] = dict(profile.to_client_connect_config())
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        config["namespace"] = settings.temporal_namespace
    return config if config.get("target_host") else None


def resolve_temporal(
    settings: Settings, stack: dict[str, str] | None = None
) -> tuple[dict[str, Any], str | None]:
    """Client.connect arguments and the Web UI's address (known for a dev stack only); explicit settings
    win over the dev stack's record (`stack`: that record, when the caller has read it already)."""
    temporal = external_temporal(settings)
    if temporal is not None:
        return temporal, None
    stack = settings.dev_stack() if stack is None else stack
    if "temporal_address" not in stack:
        raise NotConfigured("no Temporal server: set TEMPORAL_ADDRESS or run `debflow dev`")
    return {"target_host": stack["temporal_address"], "namespace": stack["namespace"]}, stack.get("ui_url")


def resolve_database(settings: Settings, stack: dict[str, str] | None = None) -> str:
    """The database URL: settings first, then the dev stack's record. The only place that decides it."""
    if stack is None:
        stack = settings.dev_stack()
    database_url = settings.database_url or stack.get("database_url")
    if not database_url:
        raise NotConfigured("no database: set DEBFLOW_DATABASE_URL or run `debflow dev`")
    return database_url


def resolve(settings: Settings) -> Endpoints:
    """Where Temporal and PostgreSQL are; explicit settings win over the dev stack's record."""
    stack = settings.dev_stack()
    temporal, ui_url = resolve_temporal(settings, stack)
    return Endpoints(temporal=temporal, database_url=resolve_database(settings, stack), ui_url=ui_url)


async def connect_temporal(arguments: dict[str, Any], runtime: Runtime | None = None) -> Client:
    return await Client.connect(**arguments, data_converter=pydantic_data_converter, runtime=runtime)


def dev_config(settings: Settings) -> TemporalDevConfig:
    return TemporalDevConfig.load(settings.temporal_dev_config)
