"""The operator's view: a worker's Prometheus endpoint during a run, and `debflow status`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.suites.suite import import_suite
from client.api import submit_upload
from client.campaigns import start_campaign
from client.status import collect_status
from models.campaign import CampaignInput, Simulation
from models.payloads import Check, TaskResult, TaskStatus
from models.tables import TaskHistory
from support.synthetic_suite import write_suite
from tests.conftest import subprocess_env
from tests.test_pipeline import worker_with
from worker.postgres import free_port
from worker.settings import PROJECT_ROOT, Settings


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.slow
async def test_worker_metrics_and_status_during_a_campaign(
    client: Client, settings: Settings, sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    trigger = f"libmet{uuid.uuid4().hex[:6]}"
    sources, packages, release, keyring = write_suite(tmp_path, trigger, dependants=30)
    import_suite(
        sessions=sessions,
        name=f"ops-{trigger}",
        sources=sources,
        packages=[packages],
        release=release,
        keyring=keyring,
    )
    address = f"127.0.0.1:{free_port()}"
    env = {**subprocess_env(settings), "DEBFLOW_METRICS_ADDRESS": address}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "client", "worker"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            params = CampaignInput(
                trigger_source=trigger,
                trigger_version="2",
                suite=f"ops-{trigger}",
                simulation=Simulation(seed=5, duration_scale=0.3),
                tests_in_flight=8,
            )
            handle = await start_campaign(client, params, settings.task_queue)
            status = None
            for _ in range(100):  # the run is still going: look at it from outside
                status = await collect_status(client, engine, settings.task_queue, settings.architectures)
                if status.campaigns and any(q.pollers for q in status.queues):
                    break
                await asyncio.sleep(0.2)
            report = await handle.result()
            text = scrape(f"http://{address}/metrics")
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    assert status is not None and status.temporal_reachable and status.database is not None
    assert {q.kind for q in status.queues if q.pollers} == {"workflow", "activity"}
    assert f"{settings.task_queue}-test-amd64" in {q.name for q in status.queues if q.pollers}
    assert any(c.workflow_id == handle.id for c in status.campaigns)
    assert report.targets == 31
    # the SDK's own metrics and debflow's, from the same endpoint
    assert (
        "temporal_activity_execution_latency" in text or "temporal_activity_schedule_to_start_latency" in text
    )
    assert "debflow_tasks{" in text and 'task="simulated-autopkgtest"' in text
    assert "debflow_db_transaction_seconds" in text
    assert "debflow_regressions_found" in text


def test_time_left_is_weighted_by_expected_durations() -> None:
    from client.campaigns import Estimator, _fraction
    from models.campaign import BatchProgress, CampaignProgress

    state = CampaignProgress(
        planned_targets=100,
        batches=2,
        batches_done=1,
        running_batches=["b"],
        counts={"PASS": 50},
        expected_total_s=1000,
        expected_finished_s=200,
    )
    running = {
        "b": BatchProgress(targets=50, done_targets=25, counts={}, expected_total_s=800, expected_done_s=300)
    }
    assert _fraction(state, running) == 0.5  # half the expected test time, though 75 of 100 targets
    no_history = state.model_copy(update={"expected_total_s": 0.0, "expected_finished_s": 0.0})
    assert _fraction(no_history, running) == 0.75
    estimator = Estimator()
    estimator.started -= 10  # ten seconds in
    left = estimator.update(0.5)
    assert left is not None and 9 < left < 11
    assert set(estimator.predictions) == {0.25, 0.5}
    assert len(estimator.errors()) == 2
    estimator.update(1.0)  # done in one jump past 75 %: no estimate was made there
    assert set(estimator.predictions) == {0.25, 0.5}


@pytest.mark.slow
async def test_status_counts_a_task_that_errored(
    client: Client,
    settings: Settings,
    sessions: sessionmaker[Session],
    engine: Engine,
    example_sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A build whose executor keeps failing (the isolated executor cannot make its environment from a
    mirror that does not exist) errors once its tries are spent: one `error` row, counted by status."""
    settings.executor = "unshare"
    settings.mirror = f"file://{tmp_path}/no-mirror"
    before = (await collect_status(None, engine, settings.task_queue, [])).last_hour.infrastructure_errors
    async with worker_with(client, settings):
        handle = await submit_upload(
            client,
            settings,
            settings.database_url or "",
            example_sources["hello-debflow"],
            checks=[Check.BUILD],
            again=True,
        )
        report = await handle.result()
    build = next(t for t in report.tasks if t.name == "build")
    assert build.status == TaskStatus.ERROR and report.result == TaskResult.ERROR
    assert "mmdebstrap" in build.summary or "environment" in build.summary, build.summary
    with sessions() as session:
        rows = session.scalars(select(TaskHistory).where(TaskHistory.workflow_id == handle.id)).all()
    assert [(r.task_name, r.subject, r.context, r.result) for r in rows] == [
        ("build", "hello-debflow", "bookworm/amd64", "error")
    ]
    assert rows[0].data["message"] == build.summary
    after = (await collect_status(None, engine, settings.task_queue, [])).last_hour.infrastructure_errors
    assert after == before + 1
