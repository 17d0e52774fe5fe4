"""A real campaign with given targets and pins and no upload: greeter-debflow of the examples suite tested
with hello-debflow 1.1 pinned from a second local suite (client/local_archive.py), host executor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.storage.store import ArtifactStore
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Pin, RunResult, Verdict
from tests.local_campaign import import_examples, import_second_suite, left_on_the_host
from tests.test_pipeline import replay
from worker.settings import Settings

# Real Debian tools end to end: minutes, not seconds (`pytest -m "not slow"` leaves it out).
pytestmark = pytest.mark.slow


async def test_a_pinned_transition_regresses_a_given_target_with_the_host_executor(
    client: Client,
    settings: Settings,
    worker: None,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tmp_path: Path,
) -> None:
    first = await import_examples(sessions, tmp_path)
    second = await import_second_suite(sessions, tmp_path)
    params = CampaignInput(
        trigger_source="hello-debflow",
        trigger_version="1.1",
        suite=first.suite,
        targets=["greeter-debflow"],
        pins=[Pin(packages=["src:hello-debflow"], suite=second.suite)],
    )
    campaign = await start_campaign(client, params, settings.task_queue)
    report = await asyncio.wait_for(campaign.result(), timeout=900)

    # Only the given target: not hello-debflow itself, whose reverse dependency greeter-debflow is.
    assert report.targets == 1 and report.counts == {Verdict.REGRESSION: 1}, report.notable
    (greeter,) = report.notable
    assert greeter.source == "greeter-debflow" and greeter.version == "1.0"
    assert greeter.new is RunResult.FAIL and greeter.reference is RunResult.PASS and greeter.attempts == 2
    assert greeter.regressed_tests == ["relays-greeting"] and greeter.reference_version is None
    assert greeter.new_log_artifact_id and greeter.reference_log_artifact_id
    logs = store.files_of([greeter.new_log_artifact_id, greeter.reference_log_artifact_id])
    new_log = logs[greeter.new_log_artifact_id]["log"].read_text()
    reference_log = logs[greeter.reference_log_artifact_id]["log"].read_text()
    # The new side installed hello-debflow 1.1 from the second suite; the reference side the first's 1.0.
    assert "hello-debflow_1.1_" in new_log and "Howdy from debflow" in new_log
    assert "Howdy" not in reference_log and "Hello from debflow" in reference_log
    assert left_on_the_host(["hello-debflow", "greeter-debflow"]) == []
    await replay(client, campaign.id, "campaign-root-pinned")
    await replay(client, f"{campaign.id}-amd64-batch-0000", "campaign-batch-pinned")
