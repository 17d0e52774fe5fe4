"""debci jobs (activities/services/debci_jobs.py, workflows/debci_jobs.py) with the SIMULATED executor on
the real test stack: one job per identical pending request, results through `since` polling, baselines
shared with campaigns both ways, private results, retries, and calls that store nothing."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.campaigns.simulated import simulated_outcome
from activities.campaigns.simulated_tests import EXIT_CODES
from activities.services.debci_jobs import RateLimited, results_since, retry, submit_tests
from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Pin, Side, Simulation
from models.debci import MIGRATION_REFERENCE, BadRequest, JobBatchInput, Requester, TestRequest, debci_status
from support.synthetic_suite import write_suite
from tests.test_pipeline import replay, worker_with
from worker.context import Context
from worker.settings import Settings
from workflows.debci_jobs import DebciJobsWorkflow

SIMULATION = Simulation(seed=11)


def add_key(sessions: sessionmaker[Session], name: str, *, admin: bool = False) -> Requester:
    with sessions.begin() as session:
        key_id = session.scalar(
            text("INSERT INTO api_key (name, key_sha256, is_admin) VALUES (:n, :h, :a) RETURNING id"),
            {"n": name, "h": hashlib.sha256(name.encode()).hexdigest(), "a": admin},
        )
    return Requester(id=int(key_id or 0), name=name, is_admin=admin)


@pytest.fixture
def suite(tmp_path: Path, sessions: sessionmaker[Session]) -> tuple[str, str]:
    """A synthetic suite: (suite name, trigger) with 12 dependants `TRIGGER-user0000`…"""
    trigger = f"libdebci{uuid.uuid4().hex[:6]}"
    name = f"test-{trigger}"
    files = write_suite(tmp_path, trigger, dependants=12)
    import_suite(
        sessions=sessions,
        name=name,
        sources=files.sources,
        packages=[files.packages],
        release=files.release,
        keyring=files.keyring,
    )
    return name, trigger


@pytest.fixture
def context(settings: Settings) -> Iterator[Context]:
    made = Context(settings)
    yield made
    made.close()


def expected_status(package: str, version: str, side: Side) -> str:
    result, _, _ = simulated_outcome(SIMULATION, package, version, "amd64", side, 1)
    return str(debci_status(EXIT_CODES[result]))


async def wait_for_results(context: Context, requester: Requester, count: int) -> list[dict[str, Any]]:
    """Poll like britney2 does, with `since`, keeping the newest state of each run id."""
    seen: dict[int, dict[str, Any]] = {}
    since = None
    for _ in range(600):
        listing = results_since(context, requester, since)
        for result in listing["results"]:
            seen[result["run_id"]] = result
        since = listing["until"]
        if len(seen) >= count and all(r["status"] is not None for r in seen.values()):
            return sorted(seen.values(), key=lambda r: r["run_id"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"results never all final: {seen}")


def job_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM debci_job")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM debci_request")).scalar_one(),
        )


async def debci_workflows(client: Client, suite: str) -> int:
    return (await client.count_workflows(f'DebflowKind = "debci" AND DebflowSuite = "{suite}"')).count


async def test_identical_requests_share_one_job_and_results_come_through_since(
    client: Client,
    settings: Settings,
    context: Context,
    suite: tuple[str, str],
    sessions: sessionmaker[Session],
) -> None:
    name, trigger = suite
    britney, other = (
        add_key(sessions, f"britney-{uuid.uuid4().hex[:6]}"),
        add_key(sessions, f"o-{uuid.uuid4().hex[:6]}"),
    )
    packages = [f"{trigger}-user{i:04d}" for i in range(12)]
    requests = [TestRequest(package=p, trigger=f"{trigger}/1.1") for p in packages]
    # No worker yet: every job stays pending while the same calls come again.
    first = await submit_tests(
        context, britney, [(name, "amd64", r) for r in requests + requests[:2]], simulation=SIMULATION
    )
    again = await submit_tests(
        context, britney, [(name, "amd64", r) for r in requests], simulation=SIMULATION
    )
    joined = await submit_tests(context, other, [(name, "amd64", requests[0])], simulation=SIMULATION)
    assert len(first.created) == 12 and first.joined == []
    assert again.created == [] and again.joined == first.created and again.batch_workflow_ids == []
    assert joined.created == [] and joined.joined == [first.created[0]]
    assert len(first.batch_workflow_ids) == 1

    async with worker_with(client, settings):
        results = await wait_for_results(context, britney, 12)
        await client.get_workflow_handle(first.batch_workflow_ids[0]).result()
    assert [r["run_id"] for r in results] == first.created
    for result, package in zip(results, packages, strict=True):
        version = f"2.{int(package[-4:])}"
        assert (result["package"], result["version"], result["suite"], result["arch"]) == (
            package,
            version,
            name,
            "amd64",
        )
        assert result["trigger"] == f"{trigger}/1.1"
        assert result["status"] == expected_status(package, version, Side.REFERENCE)
    # The other key sees only the run it asked for.
    assert [r["run_id"] for r in (await wait_for_results(context, other, 1))] == [first.created[0]]
    await replay(client, first.batch_workflow_ids[0], "debci-jobs")
    # Finished jobs free their key: the same request now makes a new job.
    later = await submit_tests(context, britney, [(name, "amd64", requests[0])], simulation=SIMULATION)
    assert len(later.created) == 1 and later.created[0] > max(first.created)


async def test_baselines_are_shared_with_campaigns_both_ways(
    client: Client,
    settings: Settings,
    worker: None,
    context: Context,
    suite: tuple[str, str],
    sessions: sessionmaker[Session],
) -> None:
    name, trigger = suite
    britney = add_key(sessions, f"britney-{uuid.uuid4().hex[:6]}")
    early = [f"{trigger}-user{i:04d}" for i in range(4)]
    # britney's baselines first: the campaign after them reuses the four.
    submitted = await submit_tests(
        context,
        britney,
        [(name, "amd64", TestRequest(package=p, trigger=MIGRATION_REFERENCE)) for p in early],
        simulation=SIMULATION,
    )
    baselines = await wait_for_results(context, britney, 4)
    assert [r["status"] for r in baselines] == [
        expected_status(p, f"2.{i}", Side.REFERENCE) for i, p in enumerate(early)
    ]
    handle = await start_campaign(
        client,
        CampaignInput(trigger_source=trigger, trigger_version="1.1", suite=name, simulation=SIMULATION),
        settings.task_queue,
    )
    report = await handle.result()
    assert report.references_reused == 4
    # Then the other way: every remaining baseline is answered by the campaign's references, none run.
    rest = [f"{trigger}-user{i:04d}" for i in range(4, 12)]
    with sessions() as session:
        runs_before = session.scalar(
            text("SELECT count(*) FROM task_history WHERE subject = ANY(:p) AND context LIKE '%/debci'"),
            {"p": rest},
        )
    second = await submit_tests(
        context,
        britney,
        [(name, "amd64", TestRequest(package=p, trigger=MIGRATION_REFERENCE)) for p in rest],
        simulation=SIMULATION,
    )
    results = [r for r in await wait_for_results(context, britney, 12) if r["run_id"] in second.created]
    assert [r["status"] for r in results] == [
        expected_status(p, f"2.{i + 4}", Side.REFERENCE) for i, p in enumerate(rest)
    ]
    with sessions() as session:
        runs_after = session.scalar(
            text("SELECT count(*) FROM task_history WHERE subject = ANY(:p) AND context LIKE '%/debci'"),
            {"p": rest},
        )
    assert runs_after == runs_before == 0  # answered from stored references: nothing ran
    assert submitted.created and second.created


async def test_private_results_and_retries(
    client: Client,
    settings: Settings,
    worker: None,
    context: Context,
    suite: tuple[str, str],
    sessions: sessionmaker[Session],
) -> None:
    name, trigger = suite
    owner, other = (
        add_key(sessions, f"own-{uuid.uuid4().hex[:6]}"),
        add_key(sessions, f"oth-{uuid.uuid4().hex[:6]}"),
    )
    admin = add_key(sessions, f"adm-{uuid.uuid4().hex[:6]}", admin=True)
    package = f"{trigger}-user0003"
    private = TestRequest(package=package, trigger=f"{trigger}/1.1", is_private=True)
    mine = await submit_tests(context, owner, [(name, "amd64", private)], simulation=SIMULATION)
    theirs = await submit_tests(context, other, [(name, "amd64", private)], simulation=SIMULATION)
    assert mine.created != theirs.created  # a private request shares its job with nobody
    (done,) = await wait_for_results(context, owner, 1)
    assert (
        done["is_private"]
        and [r["run_id"] for r in await wait_for_results(context, other, 1)] == theirs.created
    )
    from activities.services.debci_jobs import public_results

    assert mine.created[0] not in [r["run_id"] for r in public_results(context, None, other)["results"]]
    assert mine.created[0] in [r["run_id"] for r in public_results(context, None, owner)["results"]]

    with pytest.raises(PermissionError):
        await retry(context, other, mine.created[0])
    with pytest.raises(LookupError):
        await retry(context, owner, 10**12)
    again = await retry(context, admin, mine.created[0])
    with pytest.raises(BadRequest, match="pending"):
        await retry(context, owner, mine.created[0])
    results = await wait_for_results(context, owner, 2)
    assert [r["run_id"] for r in results] == [mine.created[0], again]  # the retry is the owner's
    settings.debci_retries_per_hour = 1
    with pytest.raises(RateLimited):
        await retry(context, owner, again)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"suite": "no-such-suite"}, "unknown suite"),
        ({"arch": "s390x"}, "unknown architecture"),
        ({"arch": "not-an-arch"}, "unknown architecture"),
        ({"package": "not-in-the-suite"}, "is not in suite"),
        ({"pins": [Pin(packages=["src:foo"], suite="unimported")]}, "not imported"),
        ({"reject": True}, "reject list"),
    ],
)
async def test_refused_calls_store_nothing_and_start_nothing(
    client: Client,
    engine: Engine,
    context: Context,
    suite: tuple[str, str],
    sessions: sessionmaker[Session],
    change: dict[str, Any],
    message: str,
) -> None:
    name, trigger = suite
    britney = add_key(sessions, f"britney-{uuid.uuid4().hex[:6]}")
    good = TestRequest(package=f"{trigger}-user0001", trigger=f"{trigger}/1.1")
    bad = TestRequest(
        package=change.get("package", good.package), trigger=good.trigger, pins=change.get("pins", [])
    )
    if change.get("reject"):
        with sessions.begin() as session:
            session.execute(
                text("INSERT INTO reject_list (package, suite) VALUES (:p, :s)"),
                {"p": bad.package, "s": name},
            )
    before = job_rows(engine), await debci_workflows(client, name)
    with pytest.raises(BadRequest, match=message):
        await submit_tests(
            context,
            britney,
            [(name, "amd64", good), (change.get("suite", name), change.get("arch", "amd64"), bad)],
        )
    assert (job_rows(engine), await debci_workflows(client, name)) == before


async def test_a_batch_whose_call_rolled_back_runs_nothing(
    client: Client, settings: Settings, worker: None, engine: Engine, suite: tuple[str, str]
) -> None:
    """The API starts the batch inside its transaction: if that transaction does not commit, the batch
    finds it aborted and ends without running anything."""
    name, _ = suite
    with engine.connect() as conn:
        transaction = conn.begin()
        txid = conn.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
        handle = await client.start_workflow(
            DebciJobsWorkflow.run,
            JobBatchInput(
                suite=name,
                architecture="amd64",
                first_job=1,
                last_job=10**9,
                txid=txid,
                requester="nobody",
                simulation=SIMULATION,
            ),
            id=f"debci-rolled-back-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        await asyncio.sleep(1)  # the batch waits for the transaction meanwhile
        transaction.rollback()
    assert await handle.result() == {}
