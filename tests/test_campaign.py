"""Campaigns: britney2's classes, shared and fresh references, batches on the real Temporal server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment

from activities.campaigns.campaign_tasks import CampaignTasks
from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from client.status import batches_waiting
from models.campaign import (
    BatchInput,
    CampaignInput,
    CampaignTarget,
    ClaimReferencesInput,
    ClaimReferencesResult,
    ReferenceKey,
    RunOutcome,
    RunResult,
    Simulation,
    StoreReferencesInput,
    Verdict,
)
from models.tables import TaskHistory
from models.verdicts import after_rerun, compare, regressed_tests, run_result
from support.synthetic_suite import write_suite
from tests.test_pipeline import replay
from worker.settings import Settings
from workflows.campaign_batch import CampaignBatchWorkflow

P, F, N, U = RunResult.PASS, RunResult.FAIL, RunResult.NEUTRAL, RunResult.UNTESTABLE


@pytest.mark.parametrize(
    ("code", "expected"),
    [(0, P), (2, P), (4, F), (6, F), (8, N), (12, F), (14, F), (16, None), (20, None)],
)
def test_exit_codes_as_britney_reads_them(code: int, expected: RunResult | None) -> None:
    assert run_result(code) == expected


@pytest.mark.parametrize(
    ("new", "reference", "verdict"),
    [
        (F, P, Verdict.REGRESSION),
        (F, N, Verdict.REGRESSION),
        (F, F, Verdict.ALWAYSFAIL),
        (P, F, Verdict.IMPROVEMENT),
        (P, P, Verdict.PASS),
        (P, N, Verdict.PASS),
        (N, P, Verdict.NEUTRAL),
        (N, F, Verdict.NEUTRAL),
        (P, None, Verdict.NO_REFERENCE),
        (F, None, Verdict.NO_REFERENCE),
        (U, P, Verdict.UNTESTABLE),
        (F, U, Verdict.UNTESTABLE),
        (U, None, Verdict.UNTESTABLE),
    ],
)
def test_new_against_reference(new: RunResult, reference: RunResult | None, verdict: Verdict) -> None:
    assert compare(new, reference) is verdict


def test_rerun_and_per_test_comparison() -> None:
    assert after_rerun(P) is Verdict.FLAKY and after_rerun(N) is Verdict.FLAKY
    assert after_rerun(F) is Verdict.REGRESSION
    assert after_rerun(U) is Verdict.UNTESTABLE  # an unconfirmed regression is no regression
    new = {"smoke": "FAIL", "upstream": "FAIL", "new-test": "FAIL", "docs": "PASS"}
    reference = {"smoke": "PASS", "upstream": "FAIL", "docs": "PASS"}
    assert regressed_tests(new, reference) == ["new-test", "smoke"]


def _tasks(sessions: sessionmaker[Session], settings: Settings) -> CampaignTasks:
    return CampaignTasks(
        sessions=sessions,
        store=ArtifactStore(settings.store_dir, sessions),
        scratch_dir=settings.scratch_dir,
        expiration_days=1,
    )


def _keys(count: int, state: str = "s" * 64) -> list[ReferenceKey]:
    prefix = uuid.uuid4().hex[:8]
    return [
        ReferenceKey(
            source=f"pkg-{prefix}-{i}",
            version="1.0",
            architecture="amd64",
            suite="bookworm",
            suite_state=state,
        )
        for i in range(count)
    ]


async def test_references_are_claimed_once_reused_while_fresh_and_retaken_when_stale(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    # Without a Temporal client only the lease clock tells a claim is stale (these owners are no workflows).
    tasks, env = _tasks(sessions, settings), ActivityEnvironment()
    keys = _keys(3)
    names = [k.name for k in keys]

    async def claim(owner: str) -> ClaimReferencesResult:
        found: ClaimReferencesResult = await env.run(
            tasks.claim_references,
            ClaimReferencesInput(keys=keys, owner=owner, max_age_days=30, lease_s=3600),
        )
        return found

    first = await claim("campaign-a")
    assert first.claimed == sorted(names) and not first.waiting and not first.found
    second = await claim("campaign-b")  # a is running them: b waits instead of running them again
    assert second.waiting == sorted(names) and not second.claimed
    assert second.owners == dict.fromkeys(names, "campaign-a")
    assert (await claim("campaign-a")).claimed == sorted(names)  # a retry of a's own claim

    outcome = RunOutcome(result=RunResult.PASS, exit_code=0, tests={"t": "PASS"})
    written = env.run(
        tasks.store_reference_results,
        StoreReferencesInput(owner="campaign-a", results=dict.fromkeys(names, outcome), keys=keys),
    )
    assert written == 3
    again = env.run(
        tasks.store_reference_results,
        StoreReferencesInput(owner="campaign-a", results=dict.fromkeys(names, outcome), keys=keys),
    )
    assert again == 3  # finished_at moved on: the rows do change
    reused = await claim("campaign-b")
    assert set(reused.found) == set(names) and reused.found[names[0]].result is RunResult.PASS

    with sessions.begin() as session:  # one reference grows old, one owner's lease ran out
        session.execute(
            text(
                "UPDATE collection_item SET data = jsonb_set(data, '{finished_at}', "
                "to_jsonb(CAST(:old AS text))) "
                "WHERE name = :name AND removed_at IS NULL"
            ),
            {"old": "2020-01-01T00:00:00+00:00", "name": names[0]},
        )
    after = await claim("campaign-c")
    assert after.claimed == [names[0]] and set(after.found) == set(names[1:])
    with sessions() as session:
        history = session.execute(
            text("SELECT count(*) FROM collection_item WHERE name = :name"), {"name": names[0]}
        ).scalar_one()
    assert history == 2  # the stale one is kept, soft-removed, as history


async def test_an_expired_lease_is_taken_over(sessions: sessionmaker[Session], settings: Settings) -> None:
    tasks, env = _tasks(sessions, settings), ActivityEnvironment()
    keys = _keys(2)
    await env.run(
        tasks.claim_references, ClaimReferencesInput(keys=keys, owner="crashed", max_age_days=30, lease_s=0)
    )
    taken = await env.run(
        tasks.claim_references, ClaimReferencesInput(keys=keys, owner="rescuer", max_age_days=30, lease_s=60)
    )
    assert taken.claimed == sorted(k.name for k in keys)


async def test_an_untestable_reference_is_released_not_stored(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    tasks, env = _tasks(sessions, settings), ActivityEnvironment()
    keys = _keys(2)
    claim = ClaimReferencesInput(keys=keys, owner="campaign-a", max_age_days=30, lease_s=3600)
    await env.run(tasks.claim_references, claim)
    passed = RunOutcome(result=RunResult.PASS, exit_code=0)
    missing = RunOutcome(result=RunResult.UNTESTABLE, cause="the mirror file:///m has no pool/x.tar.xz")
    results = {keys[0].name: passed, keys[1].name: missing}
    env.run(
        tasks.store_reference_results, StoreReferencesInput(owner="campaign-a", results=results, keys=keys)
    )
    after = await env.run(tasks.claim_references, claim.model_copy(update={"owner": "campaign-b"}))
    # The next campaign reuses the result and runs the untestable one again, without waiting for a lease.
    assert set(after.found) == {keys[0].name} and after.claimed == [keys[1].name] and not after.waiting


def _running_claims(sessions: sessionmaker[Session], owner: str) -> int:
    with sessions() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM collection_item WHERE removed_at IS NULL "
                    "AND data ->> 'owner' = :owner AND data ->> 'state' = 'running'"
                ),
                {"owner": owner},
            ).scalar_one()
        )


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll until `condition` holds; the bound only turns a hang into a failure naming what was awaited."""
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def _batch(targets: list[CampaignTarget], simulation: Simulation, batch_id: str, state: str) -> BatchInput:
    campaign = CampaignInput(
        trigger_source="trigger", trigger_version="2.0", simulation=simulation, tests_in_flight=20
    )
    return BatchInput(
        campaign=campaign, campaign_id=batch_id, suite_state=state, architecture="amd64", targets=targets
    )


async def test_two_campaigns_share_reference_runs(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session]
) -> None:
    prefix = uuid.uuid4().hex[:8]
    targets = [CampaignTarget(source=f"shared-{prefix}-{i}", version="1.0") for i in range(12)]
    simulation = Simulation(seed=7, duration_scale=0.2)
    state = uuid.uuid4().hex * 2
    ids = [f"share-{prefix}-{n}" for n in "ab"]
    handles = [
        await client.start_workflow(
            CampaignBatchWorkflow.run,
            _batch(targets, simulation, wid, state),
            id=wid,
            task_queue=settings.task_queue,
        )
        for wid in ids
    ]
    results = await asyncio.gather(*(h.result() for h in handles))

    with sessions() as session:
        contexts = session.scalars(select(TaskHistory.context).where(TaskHistory.workflow_id.in_(ids))).all()
    assert sum(c.endswith("/reference") for c in contexts) == len(targets)  # never run twice
    assert sum(c.endswith("/new") for c in contexts) >= 2 * len(targets)
    assert [sum(r.counts.values()) for r in results] == [len(targets)] * 2
    assert results[0].counts == results[1].counts  # same verdicts from the shared references
    assert sum(r.references_reused for r in results) == len(targets)


async def test_medium_simulated_campaign_crosses_batches_and_continues_as_new(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    trigger = f"libfoo{uuid.uuid4().hex[:6]}"
    suite = f"test-{trigger}"
    sources, packages, release, keyring = write_suite(tmp_path, trigger, dependants=39)
    import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], release=release, keyring=keyring
    )
    params = CampaignInput(
        trigger_source=trigger,
        trigger_version="1.1",
        suite=suite,
        batch_size=15,
        batches_in_flight=2,
        tests_in_flight=4,
        history_budget=150,
        simulation=Simulation(seed=3),
    )
    handle = await start_campaign(client, params, settings.task_queue)
    report = await handle.result()

    assert report.simulated and report.targets == 40  # 39 dependants and the trigger itself
    assert report.batches == 3 and sum(report.counts.values()) == 40
    assert report.max_history_events <= 150
    assert report.tests_run >= 80  # a new and a reference run per target, plus re-runs
    first_batch = f"{handle.id}-amd64-batch-0000"
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{first_batch}"')]
    await replay(client, handle.id, "campaign-root")
    await replay(client, first_batch, "campaign-batch-v2")
    assert len(runs) > 1  # the batch continued as new to stay within its history budget
    assert all(v.verdict is not Verdict.PASS for v in report.notable)
    assert {v.source for v in report.notable} <= {
        t for t in [trigger] + [f"{trigger}-user{i:04d}" for i in range(39)]
    }
    found = [
        w.id async for w in client.list_workflows(f'DebflowKind="campaign" AND DebflowPackage="{trigger}"')
    ]
    assert found == [handle.id]


@pytest.mark.slow
async def test_a_claim_of_a_terminated_batch_is_taken_over_at_once(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session]
) -> None:
    prefix = uuid.uuid4().hex[:8]
    targets = [CampaignTarget(source=f"orphan-{prefix}-{i}", version="1.0") for i in range(4)]
    simulation, state = Simulation(seed=5, duration_scale=3), uuid.uuid4().hex * 2
    first, second = f"orphaning-{prefix}", f"adopting-{prefix}"
    dead = await client.start_workflow(
        CampaignBatchWorkflow.run,
        _batch(targets, simulation, first, state),
        id=first,
        task_queue=settings.task_queue,
    )

    async def first_claimed() -> bool:
        return await asyncio.to_thread(_running_claims, sessions, first) == len(targets)

    await _until(first_claimed, "the first batch claims its references")
    waiting = await client.start_workflow(
        CampaignBatchWorkflow.run,
        _batch(targets, simulation, second, state),
        id=second,
        task_queue=settings.task_queue,
    )

    async def second_waits() -> bool:
        progress = await waiting.query(CampaignBatchWorkflow.progress)
        return bool(progress.waiting_for)

    await _until(second_waits, "the second batch waits for the first one's references")
    progress = await waiting.query(CampaignBatchWorkflow.progress)
    assert set(progress.waiting_for.values()) == {first}, progress
    assert progress.waiting_text().startswith("waiting for reference ") and f"(run by {first})" in (
        progress.waiting_text()
    )
    (line,) = await batches_waiting(client, [first, second])  # what `debflow status` prints
    assert line == f"{second}: {progress.waiting_text()}"
    # Terminated: no workflow code runs, the claims stay "running" with hours of lease left.
    await dead.terminate("test: a batch killed mid-run")
    assert await asyncio.to_thread(_running_claims, sessions, first) == len(targets)

    result = await waiting.result()  # would wait out the two-hour lease without asking Temporal
    assert sum(result.counts.values()) == len(targets) and result.references_reused == 0
    with sessions() as session:
        contexts = session.scalars(select(TaskHistory.context).where(TaskHistory.workflow_id == second)).all()
    assert sum(c.endswith("/reference") for c in contexts) == len(targets)


@pytest.mark.slow
async def test_a_cancelled_campaign_releases_its_claims_for_the_next_one(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    trigger = f"libcancel{uuid.uuid4().hex[:6]}"
    suite = f"test-{trigger}"
    sources, packages, release, keyring = write_suite(tmp_path, trigger, dependants=5)
    import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], release=release, keyring=keyring
    )
    params = CampaignInput(
        trigger_source=trigger,
        trigger_version="1.1",
        suite=suite,
        tests_in_flight=20,
        simulation=Simulation(seed=11, duration_scale=3),
    )
    cancelled = await start_campaign(client, params, settings.task_queue)
    batch = f"{cancelled.id}-amd64-batch-0000"

    async def claimed() -> bool:
        return await asyncio.to_thread(_running_claims, sessions, batch) == 6

    await _until(claimed, "the batch claims its six references")
    await cancelled.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await cancelled.result()
    assert isinstance(failed.value.cause, CancelledError)
    assert await asyncio.to_thread(_running_claims, sessions, batch) == 0
    with sessions() as session:
        released = session.execute(
            text("SELECT count(*) FROM collection_item WHERE removed_by_workflow = :batch"), {"batch": batch}
        ).scalar_one()
    assert released == 6  # by the batch itself, on its way out

    again = await start_campaign(client, params, settings.task_queue)
    report = await again.result()  # would wait out the two-hour lease if the claims were left behind
    assert report.targets == 6 and sum(report.counts.values()) == 6 and report.references_reused == 0
    await replay(client, cancelled.id, "campaign-root-cancelled")
    await replay(client, batch, "campaign-batch-cancelled")
