"""Horizontal scaling: worker processes with different capabilities share the work of their queues."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from client.api import submit_upload
from models.payloads import Check, TaskResult
from models.tables import TaskHistory
from tests.conftest import subprocess_env
from worker.main import capabilities
from worker.settings import PROJECT_ROOT, Settings
from worker.task_queues import queue_status
from workflows import queues


async def _wait_for_pollers(client: Client, queue: str, count: int) -> None:
    for _ in range(300):
        (found,) = await queue_status(client, queue, ("activity",))
        if len(found.pollers) >= count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{queue} never had {count} pollers")


@pytest.mark.slow
async def test_three_worker_processes_split_by_capability_share_the_work(
    client: Client,
    settings: Settings,
    example_sources: dict[str, Path],
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """One process runs the workflows and lintian, two run builds (one slot each): four uploads' builds
    spread over both builders, every lintian run lands on the control process."""
    arch = capabilities(settings, "build")[0].architecture
    env = {**subprocess_env(settings), "DEBFLOW_BUILD_SLOTS": "1", "DEBFLOW_TEST_SLOTS": "1"}
    roles = ["control,lintian", "build,test", "build,test"]
    logs = [open(tmp_path / f"worker-{i}.log", "wb") for i in range(len(roles))]  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "client", "worker", "--capabilities", role],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for role, log in zip(roles, logs, strict=True)
    ]
    try:
        await _wait_for_pollers(client, queues.build_queue(settings.task_queue, arch), 2)
        await _wait_for_pollers(client, queues.lintian_queue(settings.task_queue), 1)
        uploads = [example_sources["hello-debflow"], example_sources["broken-debflow"]] * 2
        handles = [
            # `again`: the same upload twice on purpose (a duplicate submission is refused otherwise).
            await submit_upload(
                client,
                settings,
                settings.database_url or "",
                dsc,
                checks=[Check.BUILD, Check.LINTIAN],
                again=True,
            )
            for dsc in uploads
        ]
        reports = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=300)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=60)
        for log in logs:
            log.close()

    assert all(r.result != TaskResult.ERROR for r in reports), [r.tasks for r in reports]
    with sessions() as session:
        rows = session.execute(
            select(TaskHistory.task_name, TaskHistory.worker).where(
                TaskHistory.workflow_id.in_([h.id for h in handles])
            )
        ).all()
    pids = {name: {worker.rsplit(":", 1)[1] for task, worker in rows if task == name} for name, _ in rows}
    control, *builders = (str(p.pid) for p in workers)
    assert pids["build"] == set(builders), "each build process should have built at least one upload"
    assert pids["lintian"] == {control}
    assert sum(task == "build" for task, _ in rows) == 4
    assert all(p.returncode == 0 for p in workers), "workers should stop cleanly on SIGTERM"


def test_capabilities_are_parsed_and_checked(settings: Settings) -> None:
    arch = capabilities(settings, "build")[0].architecture
    assert [str(c) for c in capabilities(settings, "all")] == [
        "control",
        f"build:{arch}",
        f"test:{arch}",
        "lintian",
    ]
    assert [str(c) for c in capabilities(settings, f"test:{arch}, control")] == ["control", f"test:{arch}"]
    for bad, message in [
        ("bake", "unknown capability 'bake'"),
        ("build:vax", "unknown architecture 'vax'"),
        ("lintian:amd64", "takes no architecture"),
        (",", "no capability given"),
        ("build:s390x" if arch != "s390x" else "build:amd64", "builds and tests for"),
    ]:
        try:
            capabilities(settings, bad)
        except ValueError as e:
            assert message in str(e)
        else:
            raise AssertionError(f"{bad!r} was accepted")
