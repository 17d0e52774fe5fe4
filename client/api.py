"""The Python API: submit an upload, follow it, fetch its report."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import subprocess
import uuid
from pathlib import Path

from sqlalchemy.pool import NullPool
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.dsc import BadUpload, check_dsc
from activities.process import require_tool
from activities.store import ArtifactStore, NewArtifact
from models import identifiers
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
from workflows.upload_pipeline import UploadPipelineWorkflow, builds_on


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


def _dpkg_matches(architecture: str, wildcard: str) -> bool:
    """Whether dpkg counts `architecture` in `wildcard` (any, linux-any, any-amd64, a name)."""
    if wildcard in ("any", architecture):
        return True
    if wildcard == "all" or architecture == "all":
        return False
    judged = subprocess.run(
        ["dpkg-architecture", "-a", architecture, "-i", wildcard],
        capture_output=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    return judged.returncode == 0


def check_buildable(dsc: str, field: list[str], architectures: list[str]) -> None:
    """Refuse an upload that would build nothing for the requested architectures (its run would test
    nothing): arch-specific packages where dpkg's wildcards match, arch:all ones with the first."""
    require_tool("dpkg-architecture", "dpkg-dev")
    buildable = False
    for index, arch in enumerate(architectures):
        matched = any(_dpkg_matches(arch, w) for w in field)
        if matched and not builds_on(field, arch):
            # The pipeline would skip what dpkg builds: refuse rather than report an empty success.
            raise BadUpload(
                f"{dsc}: debflow does not support the wildcards of Architecture: {' '.join(field)}"
            )
        buildable = buildable or matched or (index == 0 and "all" in field)
    if not buildable:
        raise BadUpload(
            f"{dsc} builds nothing for {' '.join(architectures)} (Architecture: {' '.join(field)})"
        )


def store_source_package(
    settings: Settings, database_url: str, dsc: Path, architectures: list[str] | None = None
) -> tuple[int, str, str]:
    """Check `dsc` and its files (and, given `architectures`, that it builds something for them), then
    store them as one debian:source-package artifact.

    The artifact's idempotency key is the SHA-256 of the .dsc (which names every file by its SHA-256):
    the same upload stored twice, even concurrently, is one artifact.
    """
    checked = check_dsc(
        dsc,
        max_bytes=settings.max_upload_bytes,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_archive_members=settings.max_archive_members,
        extract_in=settings.scratch_dir,
    )
    try:
        # Before anything is stored: every id and key of its run is then within Temporal's limits.
        identifiers.check_package(checked.data.name, checked.data.version, checked.data.binaries)
    except identifiers.TooLong as e:
        raise BadUpload(str(e)) from None
    if architectures is not None:
        check_buildable(dsc.name, checked.data.architecture, architectures)
    key = "debian:source-package/" + hashlib.sha256(dsc.read_bytes()).hexdigest()
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        store = ArtifactStore(settings.store_dir, make_sessionmaker(engine))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.artifact_expiration_days)
        (artifact_id,) = store.register(
            [NewArtifact("debian:source-package", checked.data, checked.files, key)], expires_at=expires
        )
    finally:
        engine.dispose()
    return artifact_id, checked.data.name, checked.data.version


class AlreadySubmitted(RuntimeError):
    """The same upload, suite, architectures and checks already have an open run."""


def upload_workflow_id(
    source: str, version: str, artifact_id: int, params: UploadPipelineInput, again: str | None = None
) -> str:
    """Deterministic: a duplicate submission of an open run is refused by Temporal, not run twice."""
    what = f"{artifact_id}/{params.suite}/{','.join(params.architectures)}/{','.join(params.checks)}"
    return identifiers.upload_run_id(source, version, hashlib.sha256(what.encode()).hexdigest()[:8], again)


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
    again: bool = False,
) -> WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    """Store the upload and start its pipeline; returns the workflow handle.

    An open run of the same upload, suite, architectures and checks makes this raise AlreadySubmitted,
    unless `again` asks for another run.
    """
    architectures = architectures or ["amd64"]
    check_target(settings, suite, architectures)
    artifact_id, source, version = store_source_package(settings, database_url, dsc, architectures)
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
            queue_wait_s=settings.queue_wait_s,
        ),
        retry_window_s=settings.retry_window_s,
    )
    workflow_id = upload_workflow_id(
        source, version, artifact_id, params, uuid.uuid4().hex[:6] if again else None
    )
    try:
        return await _start(client, settings, params, workflow_id, source, version, task_queue)
    except WorkflowAlreadyStartedError:
        raise AlreadySubmitted(
            f"{source} {version} is already being tested for {suite} ({' '.join(architectures)}) "
            f"in run {workflow_id}; `debflow retry {workflow_id}` re-runs its failed tasks, "
            "`--again` starts another run"
        ) from None


async def _start(
    client: Client,
    settings: Settings,
    params: UploadPipelineInput,
    workflow_id: str,
    source: str,
    version: str,
    task_queue: str | None,
) -> WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    suite, architectures = params.suite, params.architectures
    return await client.start_workflow(
        UploadPipelineWorkflow.run,
        params,
        id=workflow_id,
        task_queue=task_queue or settings.task_queue,
        # Uploads overtake campaigns (docs/operations.md, priority); one fairness key per source.
        priority=Priority(
            priority_key=settings.upload_priority, fairness_key=identifiers.upload_fairness_key(source)
        ),
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


async def get_report(client: Client, workflow_id: str, *, poll_s: float = 1.0) -> UploadReport:
    """The report once every task of the run has finished (the run may stay open for retries)."""
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return await handle.result()
        try:
            progress = await handle.query(UploadPipelineWorkflow.progress)
            if progress.finished:
                return await handle.query(UploadPipelineWorkflow.report)
        except RPCError:
            pass  # no worker has picked the run up yet
        await asyncio.sleep(poll_s)


async def retry_failed(client: Client, workflow_id: str) -> WorkflowUpdateHandle[UploadReport]:
    """Ask a finished run to re-run its failed and errored tasks; returns once the run accepted."""
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    return await handle.start_update(
        UploadPipelineWorkflow.retry_failed, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )


async def close_run(client: Client, workflow_id: str) -> None:
    """End a run's retry window now: it returns its report."""
    await client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id).signal(
        UploadPipelineWorkflow.close
    )


async def get_progress(client: Client, workflow_id: str) -> PipelineProgress:
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    return await handle.query(UploadPipelineWorkflow.progress)
