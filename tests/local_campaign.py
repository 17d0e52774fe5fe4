"""A real campaign over a local archive (client/local_archive.py): hello-debflow 1.1 uploaded and built,
its reverse dependencies tested with it and against the suite. Shared by tests/test_archive_campaign.py's
flow and the browser test."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.suites.suite import import_suite
from activities.tools.executors import HostExecutor, installed_packages
from client.api import submit_upload
from client.campaigns import campaign_for_upload, start_campaign
from client.local_archive import (
    SECOND_SUITE,
    LocalArchive,
    build_local_archive,
    build_second_suite,
    hello_with_a_new_greeting,
)
from models.campaign import CampaignReport
from models.payloads import Check, TaskResult
from worker.settings import PROJECT_ROOT, Settings

EXAMPLES = PROJECT_ROOT / "examples"


@dataclass
class LocalCampaign:
    suite: str
    archive: LocalArchive
    upload_id: str
    campaign_id: str
    report: CampaignReport


async def run_local_campaign(
    client: Client,
    settings: Settings,
    sessions: sessionmaker[Session],
    root: Path,
    trees: list[Path],
    *,
    before_import: Callable[[LocalArchive], None] | None = None,
) -> LocalCampaign:
    """Archive of `trees` imported as a fresh suite, the upload built, the campaign run to its end."""
    suite = f"examples-{uuid.uuid4().hex[:8]}"
    archive = await asyncio.to_thread(build_local_archive, root / "mirror", trees, suite=suite)
    if before_import is not None:
        before_import(archive)
    import_archive(sessions, archive)
    (root / "upload").mkdir()
    dsc = await asyncio.to_thread(hello_with_a_new_greeting, root / "upload")
    upload = await submit_upload(
        client, settings, settings.database_url or "", dsc, checks=[Check.BUILD], again=True
    )
    assert (await upload.result()).result == TaskResult.SUCCESS
    params = await campaign_for_upload(client, upload.id, suite=suite)
    assert params.trigger_source == "hello-debflow" and params.trigger_version == "1.1"
    campaign = await start_campaign(client, params, settings.task_queue)
    report = await asyncio.wait_for(campaign.result(), timeout=600)
    return LocalCampaign(suite, archive, upload.id, campaign.id, report)


def import_archive(sessions: sessionmaker[Session], archive: LocalArchive) -> None:
    """Import a local archive's suite as `debflow import-suite` does, with its keyring and mirror."""
    import_suite(
        sessions=sessions,
        name=archive.suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
        mirror=archive.mirror,
    )


async def import_examples(
    sessions: sessionmaker[Session], root: Path, trees: list[Path] | None = None
) -> LocalArchive:
    """The first suite: a fresh `examples-…` suite of `trees` (default: hello-debflow 1.0 and
    greeter-debflow) in a local archive at root/mirror, imported."""
    suite = f"examples-{uuid.uuid4().hex[:8]}"
    trees = trees or [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow"]
    archive = await asyncio.to_thread(build_local_archive, root / "mirror", trees, suite=suite)
    import_archive(sessions, archive)
    return archive


async def import_second_suite(sessions: sessionmaker[Session], root: Path) -> LocalArchive:
    """The second suite: a fresh `debflow-unstable-…` suite holding hello-debflow 1.1 in its own local
    archive at root/second-mirror, imported. A request for greeter-debflow in the first suite pinned
    [["src:hello-debflow", archive.suite]] tests it with 1.1: its relays-greeting test fails."""
    suite = f"{SECOND_SUITE}-{uuid.uuid4().hex[:8]}"
    archive = await asyncio.to_thread(build_second_suite, root / "second-mirror", suite=suite)
    import_archive(sessions, archive)
    return archive


@contextlib.contextmanager
def host_dpkg_lock() -> Iterator[None]:
    """The host executor's dpkg lock: a test that installs packages on this host, or looks at what is
    installed, holds it, so that another test process's run is never seen or disturbed half-way."""
    with open(HostExecutor.DPKG_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def left_on_the_host(names: list[str]) -> list[str]:
    """Which of the packages are installed on this host, read under the host executor's dpkg lock."""
    with host_dpkg_lock():
        return installed_packages(names)
