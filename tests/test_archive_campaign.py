"""A real campaign: an upload built by its pipeline, its reverse dependency fetched from a real local archive
and tested with the host executor against the upload and against the suite."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowFailureError

from activities.executors import installed_packages
from activities.store import ArtifactStore
from activities.suite import import_suite
from client.api import submit_upload
from client.campaigns import campaign_for_upload, start_campaign
from client.local_archive import build_local_archive, hello_with_a_new_greeting
from models.campaign import CampaignInput, RunResult, Verdict
from models.payloads import Check, TaskResult
from tests.test_pipeline import replay
from worker.settings import PROJECT_ROOT, Settings

EXAMPLES = PROJECT_ROOT / "examples"
PACKAGES = ("hello-debflow", "hello-debflow-doc", "greeter-debflow")


async def test_real_campaign_with_the_host_executor_confirms_a_regression(
    client: Client,
    settings: Settings,
    worker: None,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tmp_path: Path,
) -> None:
    suite = f"examples-{uuid.uuid4().hex[:8]}"
    archive = await asyncio.to_thread(
        build_local_archive,
        tmp_path / "mirror",
        [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow"],
        suite=suite,
    )
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

    params = await campaign_for_upload(client, upload.id, suite=suite)
    assert params.trigger_source == "hello-debflow" and params.trigger_version == "1.1"
    campaign = await start_campaign(client, params, settings.task_queue)
    report = await asyncio.wait_for(campaign.result(), timeout=600)

    assert not report.simulated
    # hello-debflow itself: its updated tests pass with 1.1 and its old ones with 1.0.
    assert report.counts == {Verdict.REGRESSION: 1, Verdict.PASS: 1}, report.notable
    (greeter,) = report.notable
    assert greeter.source == "greeter-debflow" and greeter.verdict is Verdict.REGRESSION
    assert greeter.attempts == 2  # confirmed by a re-run of the new side
    assert greeter.new is RunResult.FAIL and greeter.reference is RunResult.PASS
    assert greeter.regressed_tests == ["relays-greeting"]
    assert greeter.new_log_artifact_id and greeter.reference_log_artifact_id
    logs = store.files_of([greeter.new_log_artifact_id, greeter.reference_log_artifact_id])
    new_log = logs[greeter.new_log_artifact_id]["log"].read_text()
    reference_log = logs[greeter.reference_log_artifact_id]["log"].read_text()
    # The new side ran with the upload's binaries, the reference side with the suite's.
    assert "Howdy from debflow" in new_log
    assert "Howdy" not in reference_log and "Hello from debflow" in reference_log
    artifact = store.artifacts([greeter.new_log_artifact_id])[greeter.new_log_artifact_id]
    assert artifact.data["virt_server"] == "host:null" and artifact.data["exit_code"] == 4
    assert installed_packages(list(PACKAGES)) == [], "the host executor must remove what the tests installed"
    await replay(client, campaign.id, "campaign-root-real")
    await replay(client, f"{campaign.id}-amd64-batch-0000", "campaign-batch-real")


async def test_real_campaign_without_the_upload_binaries_is_refused(
    client: Client, settings: Settings, worker: None
) -> None:
    params = CampaignInput(trigger_source="hello-debflow", trigger_version="1.1", suite="bookworm")
    handle = await start_campaign(client, params, settings.task_queue)
    try:
        await handle.result()
    except WorkflowFailureError as e:
        assert "needs the upload's source and binaries" in str(e.cause)
    else:
        raise AssertionError("a real campaign without binaries ran")
