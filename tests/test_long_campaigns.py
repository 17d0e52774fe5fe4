"""Campaigns for long names: a SIMULATED one on the real bookworm indices, a real one on a local archive, and
campaign workflows whose ids and triggers push Temporal's limits."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowFailureError

from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite, reverse_dependency_targets, source_binaries
from activities.tools.executors import installed_packages
from client.api import submit_upload
from client.campaigns import campaign_for_upload, start_campaign
from client.local_archive import build_local_archive
from models import identifiers
from models.campaign import CampaignInput, CampaignReport, Simulation, Verdict
from models.payloads import Check, TaskResult
from models.suite import SOURCE_ITEM, SUITE_CATEGORY
from models.tables import Collection, CollectionItem
from support.synthetic_suite import write_suite
from tests.long_packages import (
    LONG_GREETER,
    LONG_HELLO,
    long_greeter_tree,
    long_hello_tree,
    long_hello_with_a_new_greeting,
)
from tests.test_pipeline import replay
from worker.settings import PROJECT_ROOT, Settings
from workflows.campaign import CampaignWorkflow

BOOKWORM = PROJECT_ROOT.parent / "shared" / "data" / "debian-bookworm"


@pytest.fixture(scope="module")
def bookworm(sessions: sessionmaker[Session]) -> str:
    """The real bookworm indices (../shared/data), imported once for this module under a name of its own."""
    name = f"bookworm-{uuid.uuid4().hex[:6]}"
    import_suite(
        sessions=sessions,
        name=name,
        sources=BOOKWORM / "Sources.xz",
        packages=[BOOKWORM / "Packages_amd64.xz"],
        release=BOOKWORM / "InRelease",
    )
    return name


def longest_named_with_rdeps(sessions: sessionmaker[Session], suite: str) -> tuple[str, str, int]:
    """The source with the longest name among those whose name and version pass 45 characters (what broke
    campaigns: 1,097 of bookworm's sources) that has reverse dependencies to test; with its target count."""
    with sessions() as session:
        rows = session.execute(
            select(CollectionItem.data["name"].astext, CollectionItem.data["version"].astext)
            .join(Collection, Collection.id == CollectionItem.collection_id)
            .where(
                Collection.category == SUITE_CATEGORY,
                Collection.name == suite,
                CollectionItem.category == SOURCE_ITEM,
                CollectionItem.removed_at.is_(None),
            )
        ).all()
        long = sorted({(n, v) for n, v in rows if len(n) + len(v) > 45}, key=lambda r: (-len(r[0]), r))
        assert len({n for n, _ in long}) >= 1000  # the issue counts 1,097
        for name, _ in long:
            version, binaries = source_binaries(session=session, suite=suite, source=name)
            targets = reverse_dependency_targets(
                session=session, suite=suite, binaries=binaries, include_source=name
            )
            if any(t.source != name for t in targets):
                return name, version, len(targets)
    raise AssertionError("no long-named bookworm source has reverse dependencies")


@pytest.mark.slow
async def test_simulated_campaign_on_bookworm_for_a_long_named_trigger(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], bookworm: str
) -> None:
    trigger, version, targets = longest_named_with_rdeps(sessions, bookworm)
    params = CampaignInput(
        trigger_source=trigger,
        trigger_version=version,
        suite=bookworm,
        batch_size=max(1, targets // 2),  # at least two batches: their ids derive from the campaign's
        simulation=Simulation(seed=11),
    )
    handle = await start_campaign(client, params, settings.task_queue)
    report: CampaignReport = await handle.result()

    assert report.simulated and report.trigger_source == trigger and report.trigger_version == version
    assert report.targets == targets and sum(report.counts.values()) == targets
    assert report.batches >= 2
    assert f"{trigger}_{version}" in handle.id  # the id fits: the name is kept whole
    info = (await handle.describe()).raw_description.workflow_execution_info
    assert info.priority.fairness_key == identifiers.campaign_fairness_key(handle.id)
    assert len(info.priority.fairness_key.encode()) <= identifiers.FAIRNESS_KEY_MAX
    batch = identifiers.batch_id(handle.id, "amd64", 0)
    assert [w.id async for w in client.list_workflows(f'WorkflowId = "{batch}"')]
    found = [
        w.id async for w in client.list_workflows(f'DebflowKind="campaign" AND DebflowPackage="{trigger}"')
    ]
    assert found == [handle.id]
    await replay(client, handle.id, "campaign-root-bounded")
    await replay(client, batch, "campaign-batch-bounded")


async def test_a_campaign_whose_id_is_at_the_limit_runs_its_batches(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Started without start_campaign (as `temporal workflow start` can): a 1,000-byte id, whose batch ids
    would pass the limit whole, gets shortened batch ids and completes."""
    trigger = f"libfoo{uuid.uuid4().hex[:6]}"
    sources, packages, release, keyring = write_suite(tmp_path, trigger, dependants=3)
    import_suite(
        sessions=sessions,
        name=f"test-{trigger}",
        sources=sources,
        packages=[packages],
        release=release,
        keyring=keyring,
    )
    params = CampaignInput(
        trigger_source=trigger,
        trigger_version="1.1",
        suite=f"test-{trigger}",
        batch_size=2,
        simulation=Simulation(),
    )
    workflow_id = f"campaign-{trigger}-" + "x" * (identifiers.WORKFLOW_ID_MAX - len(trigger) - 10)
    assert len(workflow_id) == identifiers.WORKFLOW_ID_MAX
    report = await client.execute_workflow(
        CampaignWorkflow.run, params, id=workflow_id, task_queue=settings.task_queue
    )
    assert report.targets == 4 and report.batches == 2 and sum(report.counts.values()) == 4
    for index in range(2):
        batch = identifiers.batch_id(workflow_id, "amd64", index)
        assert len(batch) == identifiers.WORKFLOW_ID_MAX and batch.endswith(f"-amd64-batch-{index:04d}")
        assert [w.id async for w in client.list_workflows(f'WorkflowId = "{batch}"')] == [batch]


async def test_a_campaign_started_directly_with_a_trigger_debian_could_not_hold_fails_clearly(
    client: Client, settings: Settings, worker: None
) -> None:
    params = CampaignInput(trigger_source="n" * 101, trigger_version="1.0", simulation=Simulation())
    with pytest.raises(identifiers.TooLong):
        await start_campaign(client, params, settings.task_queue)  # the API refuses it before starting
    handle = await client.start_workflow(
        CampaignWorkflow.run, params, id=f"direct-{uuid.uuid4().hex[:8]}", task_queue=settings.task_queue
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "source package name" in str(failed.value.cause) and "at most 100" in str(failed.value.cause)


@pytest.mark.slow
async def test_real_campaign_for_a_long_named_trigger_confirms_a_regression(
    client: Client,
    settings: Settings,
    worker: None,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tmp_path: Path,
) -> None:
    """The local-archive campaign of tests/test_archive_campaign.py with both packages renamed to names of
    80 and 88 characters: upload, build, campaign, references, verdicts."""
    suite = f"long-{uuid.uuid4().hex[:8]}"
    trees = [long_hello_tree(tmp_path / "trees"), long_greeter_tree(tmp_path / "trees")]
    archive = await asyncio.to_thread(build_local_archive, tmp_path / "mirror", trees, suite=suite)
    import_suite(
        sessions=sessions,
        name=suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
        mirror=archive.mirror,
    )
    dsc = await asyncio.to_thread(long_hello_with_a_new_greeting, tmp_path / "upload")
    upload = await submit_upload(client, settings, settings.database_url or "", dsc, checks=[Check.BUILD])
    assert (await upload.result()).result == TaskResult.SUCCESS

    params = await campaign_for_upload(client, upload.id, suite=suite)
    assert params.trigger_source == LONG_HELLO and params.trigger_version == "1.1"
    campaign = await start_campaign(client, params, settings.task_queue)
    report = await asyncio.wait_for(campaign.result(), timeout=900)

    assert not report.simulated
    assert report.counts == {Verdict.REGRESSION: 1, Verdict.PASS: 1}, report.notable
    (greeter,) = report.notable
    assert greeter.source == LONG_GREETER and greeter.attempts == 2
    assert greeter.regressed_tests == ["relays-greeting"]
    logs = store.files_of([greeter.new_log_artifact_id or 0, greeter.reference_log_artifact_id or 0])
    assert "Howdy from debflow" in logs[greeter.new_log_artifact_id or 0]["log"].read_text()
    assert "Hello from debflow" in logs[greeter.reference_log_artifact_id or 0]["log"].read_text()
    packages = [LONG_HELLO, f"{LONG_HELLO}-doc", LONG_GREETER]
    assert installed_packages(packages) == [], "the host executor must remove what the tests installed"
    info = (await campaign.describe()).raw_description.workflow_execution_info
    assert len(info.priority.fairness_key.encode()) <= identifiers.FAIRNESS_KEY_MAX
