"""A real campaign with given targets and pins and no upload: greeter-debflow of the examples suite tested
with hello-debflow 1.1 pinned from a second local suite (client/local_archive.py), with the host executor
and with the unshare executor on prepared testbeds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.storage.store import ArtifactStore
from activities.tools.environments import EnvironmentStore
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Pin, RunResult, Verdict
from tests.local_campaign import import_examples, import_second_suite
from tests.test_pipeline import replay
from tests.test_unshare import ARCH, SUITE, cached_tarball  # noqa: F401 (a fixture)
from worker.main import build_worker
from worker.settings import Settings


async def pinned_campaign(sessions: sessionmaker[Session], root: Path) -> CampaignInput:
    """greeter-debflow of a fresh examples suite, with hello-debflow pinned from a fresh second suite."""
    first = await import_examples(sessions, root)
    second = await import_second_suite(sessions, root)
    return CampaignInput(
        trigger_source="hello-debflow",
        trigger_version="1.1",
        suite=first.suite,
        targets=["greeter-debflow"],
        pins=[Pin(packages=["src:hello-debflow"], suite=second.suite)],
    )


# Real Debian tools end to end: minutes, not seconds (`pytest -m "not slow"` leaves it out).
pytestmark = pytest.mark.slow


async def test_a_pinned_transition_on_prepared_testbeds_with_the_unshare_executor(
    client: Client,
    settings: Settings,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tmp_path: Path,
    cached_tarball: tuple[Path, str],  # noqa: F811
) -> None:
    params = await pinned_campaign(sessions, tmp_path)
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
    parts = build_worker(client, isolated, isolated.database_url or "")
    try:
        async with parts:
            campaign = await start_campaign(client, params, isolated.task_queue)
            report = await asyncio.wait_for(campaign.result(), timeout=900)
    finally:
        parts.close()

    # Only the given target: not hello-debflow itself, whose reverse dependency greeter-debflow is. (The
    # same pinned run on the host executor: tests/test_debci_roundtrip.py.)
    assert report.targets == 1 and report.counts == {Verdict.REGRESSION: 1}, report.notable
    (greeter,) = report.notable
    assert greeter.source == "greeter-debflow" and greeter.version == "1.0"
    assert greeter.new is RunResult.FAIL and greeter.reference is RunResult.PASS and greeter.attempts == 2
    assert greeter.regressed_tests == ["relays-greeting"] and greeter.reference_version is None
    assert greeter.new_log_artifact_id and greeter.reference_log_artifact_id
    logs = store.files_of([greeter.new_log_artifact_id, greeter.reference_log_artifact_id])
    new_log = logs[greeter.new_log_artifact_id]["log"].read_text()
    reference_log = logs[greeter.reference_log_artifact_id]["log"].read_text()
    # The pinned 1.1 (from the second suite's mirror) installed in the testbed whose apt source is the
    # first suite's index, offline, on the overlay virt server.
    assert "hello-debflow_1.1_" in new_log and "Howdy from debflow" in new_log
    assert "Howdy" not in reference_log and "Hello from debflow" in reference_log
    assert "overlay_virt.py" in new_log and "Fetched" not in new_log
    await replay(client, campaign.id, "campaign-root-pinned")
    await replay(client, f"{campaign.id}-amd64-batch-0000", "campaign-batch-pinned")
