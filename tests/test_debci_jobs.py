"""debci jobs (activities/services/debci_jobs.py, workflows/debci_jobs.py) with the SIMULATED executor on
the real test stack: one job per identical pending request, results through `since` polling, baselines
shared with campaigns both ways, private results, retries, and calls that store nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.campaigns.simulated import simulated_outcome
from activities.campaigns.simulated_tests import EXIT_CODES
from activities.debci.jobs import DebciJobTasks
from activities.services.debci_jobs import RateLimited, retry, submit_tests
from activities.services.debci_results import public_results, results_since
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Pin, RunInput, RunOutcome, RunResult, Side, Simulation
from models.debci import MIGRATION_REFERENCE, BadRequest, JobBatchInput, Requester, TestRequest, debci_status
from models.vocabulary import ActivityName
from tests.debci_support import (  # noqa: F401 (no_batches_left: a fixture)
    debci_workflows,
    job_rows,
    no_batches_left,
    requester,
    synthetic_suite,
)
from tests.test_pipeline import replay, worker_with
from worker.context import Context
from worker.expiry_schedule import run_expiry_now
from worker.settings import Settings
from workflows import queues
from workflows.debci_jobs import DebciJobsWorkflow

SIMULATION = Simulation(seed=11)

# Batches a test leaves pending are ended after it (tests/debci_support.py).
pytestmark = pytest.mark.usefixtures("no_batches_left")


@pytest.fixture
def suite(tmp_path: Path, sessions: sessionmaker[Session]) -> tuple[str, str]:
    """A synthetic suite: (suite name, trigger) with 12 dependants `TRIGGER-user0000`…"""
    return synthetic_suite(tmp_path, sessions, "debci", 12)


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


async def test_identical_requests_share_one_job_and_results_come_through_since(
    client: Client,
    settings: Settings,
    context: Context,
    suite: tuple[str, str],
    sessions: sessionmaker[Session],
) -> None:
    name, trigger = suite
    britney, other = (
        requester(sessions, "britney"),
        requester(sessions, "o"),
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
    await replay(client, first.batch_workflow_ids[0], "debci-jobs-v2")
    # Each test has the request's priority below uploads' and the requester as fairness key.
    history = await client.get_workflow_handle(first.batch_workflow_ids[0]).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == ActivityName.RUN_CAMPAIGN_TEST
    ]
    assert len(scheduled) == 12
    assert {(a.priority.priority_key, a.priority.fairness_key) for a in scheduled} == {(5, britney.name)}
    # britney2 resending after a crash: a request for a test decided a moment ago joins that result
    # (and shows in the next `since` poll); past the window, or for a tmpfail, it runs again.
    since = results_since(context, other, None)["until"]
    resent = await submit_tests(context, other, [(name, "amd64", requests[1])], simulation=SIMULATION)
    assert resent.created == [] and resent.joined == [first.created[1]]
    assert first.created[1] in [r["run_id"] for r in results_since(context, other, since)["results"]]
    settings.debci_dedup_window_s = 0
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
    britney = requester(sessions, "britney")
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
        requester(sessions, "own"),
        requester(sessions, "oth"),
    )
    admin = requester(sessions, "adm", admin=True)
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
    britney = requester(sessions, "britney")
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


async def test_expiry_deletes_finished_jobs_past_their_period_only(
    client: Client, settings: Settings, worker: None, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    owner = requester(sessions, "exp")
    rows = {"old-done": (100, "pass"), "young-done": (10, "fail"), "old-pending": (100, None)}
    ids: dict[str, int] = {}
    with sessions.begin() as session:
        for name, (days, status) in rows.items():
            ids[name] = int(
                session.scalar(
                    text(
                        "INSERT INTO debci_job (job_key, suite, architecture, package, trigger, "
                        "requester_id, status, batch_workflow_id, updated_at) VALUES (:key, 's', 'amd64', "
                        ":p, 't/1', :r, :status, 'b', now() - make_interval(days => :days)) RETURNING id"
                    ),
                    {"key": uuid.uuid4().hex, "p": name, "r": owner.id, "status": status, "days": days},
                )
                or 0
            )
            session.execute(
                text("INSERT INTO debci_request (requester_id, job_id) VALUES (:r, :j)"),
                {"r": owner.id, "j": ids[name]},
            )
    tag = f"expiry-debci-{uuid.uuid4().hex[:8]}"
    result = await run_expiry_now(
        client, settings.model_copy(update={"debci_job_keep_days": 90}), workflow_id=tag
    )
    assert result.debci_jobs_deleted >= 1
    with engine.connect() as conn:
        left = set(
            conn.scalars(text("SELECT id FROM debci_job WHERE id = ANY(:ids)"), {"ids": list(ids.values())})
        )
        requests = conn.scalar(
            text("SELECT count(*) FROM debci_request WHERE requester_id = :r"), {"r": owner.id}
        )
    assert left == {ids["young-done"], ids["old-pending"]} and requests == 2
    await replay(client, tag, "expiry-debci-jobs")


# A stand-in for the testbed, for the tries logic only: autopkgtest cannot be made to fail its testbed
# (exit 16, 20) on purpose here. Exit codes per target (by its index in the suite) and try.
SCRIPT = {0: [16, 0], 1: [20, 20, 20], 3: [1, 1, 1], 4: [8], 5: [12]}


@activity.defn(name=ActivityName.RUN_ARCHIVE_TEST)
def scripted_testbed(params: RunInput) -> RunOutcome:
    index = int(params.target.source[-4:])
    if index == 2:
        raise ApplicationError("testbed did not boot", type="AutopkgtestInfrastructureError")
    code = SCRIPT[index][min(params.attempt, len(SCRIPT[index])) - 1]
    return RunOutcome(result=RunResult.PASS, exit_code=code)


async def test_temporary_failures_are_tried_again_and_reported_as_tmpfail_when_tries_run_out(
    client: Client,
    settings: Settings,
    context: Context,
    suite: tuple[str, str],
    sessions: sessionmaker[Session],
) -> None:
    name, trigger = suite
    britney = requester(sessions, "britney")
    settings.debci_tmpfail_backoff_s = 0.1
    requests = [TestRequest(package=f"{trigger}-user{i:04d}", trigger=f"{trigger}/1.1") for i in range(6)]
    jobs = DebciJobTasks(sessions=sessions)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        async with (
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=[DebciJobsWorkflow],
                activities=jobs.all(),
                activity_executor=pool,
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
            Worker(
                client,
                task_queue=queues.test_queue(settings.task_queue, "amd64"),
                activities=[scripted_testbed],
                activity_executor=pool,
            ),
        ):
            submitted = await submit_tests(context, britney, [(name, "amd64", r) for r in requests])
            results = await wait_for_results(context, britney, 6)
            await client.get_workflow_handle(submitted.batch_workflow_ids[0]).result()
    statuses = [(r["status"], r["exit_code"]) for r in results]
    assert statuses == [
        ("pass", 0),  # a testbed failure, then a pass: only the pass is reported
        ("tmpfail", 20),
        ("tmpfail", None),  # the activity failed every try: tmpfail, with the cause kept
        ("tmpfail", 1),  # debci reads any undocumented code as a temporary failure
        ("neutral", 8),
        ("fail", 12),
    ]
    with sessions() as session:
        cause = session.scalar(
            text("SELECT cause FROM debci_job WHERE id = :id"), {"id": results[2]["run_id"]}
        )
    assert "testbed did not boot" in (cause or "")
