"""The Python API: submit an upload, follow it, fetch its report."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from sqlalchemy.pool import NullPool
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.dsc import BadUpload, check_dsc
from activities.store import ArtifactStore, NewArtifact
from models.db import make_engine, make_sessionmaker
from models.payloads import (
    Check,
    PipelineProgress,
    TaskTimeouts,
    UploadPipelineInput,
    UploadReport,
)
from worker.settings import Settings
from workflows import search_attributes as sa
from workflows.upload_pipeline import UploadPipelineWorkflow


def workflow_url(ui_url: str | None, namespace: str, workflow_id: str) -> str | None:
    if not ui_url:
        return None
    return f"{ui_url}/namespaces/{namespace}/workflows/{workflow_id}"


def check_target(settings: Settings, suite: str, architectures: list[str]) -> None:
    """Unknown suites and architectures are bad input, refused before anything is stored."""
    if suite not in settings.suites:
        raise BadUpload(f"unknown suite {suite!r} (known: {', '.join(settings.suites)})")
    if not architectures:
        raise BadUpload("no architecture requested")
    for arch in architectures:
        if arch not in settings.architectures:
            raise BadUpload(f"unknown architecture {arch!r}")
    if len(set(architectures)) != len(architectures):
        raise BadUpload("an architecture is requested twice")


def store_source_package(settings: Settings, database_url: str, dsc: Path) -> tuple[int, str, str]:
    """Check `dsc` and its files, then store them as one debian:source-package artifact."""
    checked = check_dsc(dsc, max_bytes=settings.max_upload_bytes)
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        store = ArtifactStore(settings.store_dir, make_sessionmaker(engine))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.artifact_expiration_days)
        (artifact_id,) = store.register(
            [NewArtifact("debian:source-package", checked.data, checked.files)], expires_at=expires
        )
    finally:
        engine.dispose()
    return artifact_id, checked.data.name, checked.data.version


async def submit_upload(
    client: Client,
    settings: Settings,
    database_url: str,
    dsc: Path,
    *,
    suite: str = "bookworm",
    architectures: list[str] | None = None,
    checks: list[Check] | None = None,
    task_queue: str | None = None,
) -> WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    """Store the upload and start its pipeline; returns the workflow handle."""
    architectures = architectures or ["amd64"]
    check_target(settings, suite, architectures)
    artifact_id, source, version = store_source_package(settings, database_url, dsc)
    params = UploadPipelineInput(
        upload_artifact_id=artifact_id,
        suite=suite,
        architectures=architectures,
        checks=checks or list(Check),
        timeouts=TaskTimeouts(
            build_s=settings.build_timeout,
            lintian_s=settings.lintian_timeout,
            autopkgtest_s=settings.autopkgtest_timeout,
            heartbeat_s=settings.heartbeat_timeout,
        ),
    )
    workflow_id = f"upload-{source}_{version}-{uuid.uuid4().hex[:8]}"
    return await client.start_workflow(
        UploadPipelineWorkflow.run,
        params,
        id=workflow_id,
        task_queue=task_queue or settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.PACKAGE, source),
                SearchAttributePair(sa.VERSION, version),
                SearchAttributePair(sa.SUITE, suite),
                SearchAttributePair(sa.KIND, "upload"),
                SearchAttributePair(sa.ARCHITECTURES, architectures),
                SearchAttributePair(sa.RESULT, "pending"),
            ]
        ),
        static_summary=f"upload {source} {version} to {suite} ({' '.join(architectures)})",
    )


async def get_report(client: Client, workflow_id: str) -> UploadReport:
    """The report of a finished run (waits for a running one)."""
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    return await handle.result()


async def get_progress(client: Client, workflow_id: str) -> PipelineProgress:
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    return await handle.query(UploadPipelineWorkflow.progress)
