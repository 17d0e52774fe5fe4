"""The real local-archive campaign of tests/test_archive_campaign.py, its tests run isolated: the unshare
executor on prepared testbeds gives the same verdicts as the host executor."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite
from activities.tools.environments import EnvironmentStore
from client.api import submit_upload
from client.campaigns import campaign_for_upload, start_campaign
from client.local_archive import build_local_archive, hello_with_a_new_greeting, pool_directory
from models.campaign import RunResult, Verdict
from models.payloads import Check, TaskResult
from tests.test_archive_campaign import EXAMPLES, RELAY, relay_tree
from tests.test_unshare import ARCH, SUITE, cached_tarball  # noqa: F401 (a fixture)
from worker.main import build_worker
from worker.settings import Settings

pytestmark = pytest.mark.slow


async def test_real_campaign_with_the_unshare_executor_gives_the_host_executors_verdicts(
    client: Client,
    settings: Settings,
    worker: None,  # the host executor: builds the upload (its build is not what this test is about)
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tmp_path: Path,
    cached_tarball: tuple[Path, str],  # noqa: F811
) -> None:
    suite = f"examples-{uuid.uuid4().hex[:8]}"
    archive = await asyncio.to_thread(
        build_local_archive,
        tmp_path / "mirror",
        [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow", relay_tree(tmp_path / "trees")],
        suite=suite,
    )
    missing = f"{pool_directory(RELAY)}/{RELAY}_1.0.tar.xz"
    (archive.root / missing).unlink()  # still listed in Sources, like a mirror mid-sync
    import_suite(
        sessions=sessions,
        name=suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
        mirror=archive.mirror,
    )
    (tmp_path / "upload").mkdir()
    dsc = await asyncio.to_thread(hello_with_a_new_greeting, tmp_path / "upload")
    upload = await submit_upload(
        client, settings, settings.database_url or "", dsc, checks=[Check.BUILD], again=True
    )
    assert (await upload.result()).result == TaskResult.SUCCESS

    # The campaign's tests on a worker of its own, with the unshare executor on the base release.
    tarball, mirror = cached_tarball
    isolated = settings.model_copy(
        update={
            "executor": "unshare",
            "mirror": mirror,
            "testbed_base_suite": SUITE,
            "task_queue": f"{settings.task_queue}-unshare",
        }
    )
    environments = EnvironmentStore(
        store=store,
        mirror=mirror,
        cache_dir=isolated.scratch_dir / "environments",
        max_age_days=7,
        expiration_days=30,
    )
    if environments.find(SUITE, ARCH) is None:
        environments.import_tarball(tarball, SUITE, ARCH)
    params = await campaign_for_upload(client, upload.id, suite=suite)
    parts = build_worker(client, isolated, isolated.database_url or "")
    try:
        async with parts:
            campaign = await start_campaign(client, params, isolated.task_queue)
            report = await asyncio.wait_for(campaign.result(), timeout=900)
    finally:
        parts.close()

    # The verdicts of tests/test_archive_campaign.py's host run.
    assert report.counts == {Verdict.REGRESSION: 1, Verdict.PASS: 1, Verdict.UNTESTABLE: 1}, report.notable
    (greeter,) = [v for v in report.notable if v.verdict is not Verdict.UNTESTABLE]
    (relay,) = [v for v in report.notable if v.verdict is Verdict.UNTESTABLE]
    assert relay.source == RELAY and missing in (relay.cause or "")
    assert greeter.source == "greeter-debflow" and greeter.verdict is Verdict.REGRESSION
    assert greeter.new is RunResult.FAIL and greeter.reference is RunResult.PASS
    assert greeter.regressed_tests == ["relays-greeting"]
    assert greeter.new_log_artifact_id and greeter.reference_log_artifact_id
    logs = store.files_of([greeter.new_log_artifact_id, greeter.reference_log_artifact_id])
    new_log = logs[greeter.new_log_artifact_id]["log"].read_text()
    reference_log = logs[greeter.reference_log_artifact_id]["log"].read_text()
    assert "Howdy from debflow" in new_log
    assert "Howdy" not in reference_log and "Hello from debflow" in reference_log
    artifacts = store.artifacts([greeter.new_log_artifact_id, greeter.reference_log_artifact_id])
    assert {a.data["virt_server"] for a in artifacts.values()} == {"unshare:unshare"}
    assert artifacts[greeter.new_log_artifact_id].data["exit_code"] == 4
    # Not the tarball path: autopkgtest ran on the overlay virt server, offline.
    assert "overlay_virt.py" in new_log and "Fetched" not in new_log
