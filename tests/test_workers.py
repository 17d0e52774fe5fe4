"""Horizontal scaling: separate worker processes share one task queue."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from client.api import submit_upload
from models.payloads import Check, TaskResult
from models.tables import TaskHistory
from tests.conftest import subprocess_env
from worker.settings import PROJECT_ROOT, Settings


async def test_two_worker_processes_share_one_task_queue(
    client: Client,
    settings: Settings,
    example_sources: dict[str, Path],
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    # One activity slot each, so four concurrent builds cannot all land on one process.
    env = {**subprocess_env(settings), "DEBFLOW_MAX_CONCURRENT_ACTIVITIES": "1"}
    logs = [open(tmp_path / f"worker-{i}.log", "wb") for i in range(2)]  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "client", "worker"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        uploads = [example_sources["hello-debflow"], example_sources["broken-debflow"]] * 2
        handles = [
            # `again`: the same upload twice on purpose (a duplicate submission is refused otherwise).
            await submit_upload(
                client, settings, settings.database_url or "", dsc, checks=[Check.BUILD], again=True
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

    assert all(r.result == TaskResult.SUCCESS for r in reports)
    with sessions() as session:
        used = set(
            session.scalars(
                select(TaskHistory.worker).where(TaskHistory.workflow_id.in_([h.id for h in handles]))
            )
        )
    assert {identity.rsplit(":", 1)[1] for identity in used} == {str(p.pid) for p in workers}
    assert all(p.returncode == 0 for p in workers), "workers should stop cleanly on SIGTERM"
