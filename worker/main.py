"""Building and running a worker process: activities, workflows, the executor and the database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities import history
from activities.campaign_tasks import CampaignTasks
from activities.debian_tasks import DebianTasks
from activities.executors import make_executor
from activities.expiry import ExpiryActivities
from activities.store import ArtifactStore
from models.db import make_engine, make_sessionmaker
from worker.settings import Settings
from workflows.campaign import CampaignWorkflow
from workflows.campaign_batch import CampaignBatchWorkflow
from workflows.expiry import ExpiryWorkflow
from workflows.upload_pipeline import UploadPipelineWorkflow

WORKFLOWS: Sequence[type] = (UploadPipelineWorkflow, CampaignWorkflow, CampaignBatchWorkflow, ExpiryWorkflow)

log = logging.getLogger("debflow.worker")


@dataclass
class DebflowWorker:
    """A Temporal worker and the resources its activities use; `close` after it stopped."""

    worker: Worker
    pool: concurrent.futures.ThreadPoolExecutor
    engine: Engine

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()


def build_worker(
    client: Client, settings: Settings, database_url: str, *, task_queue: str | None = None
) -> DebflowWorker:
    """A worker polling `task_queue` (default: the settings') for workflows and activities."""
    engine = make_engine(database_url, pool_size=settings.max_concurrent_activities + 1)
    sessions = make_sessionmaker(engine)
    store = ArtifactStore(settings.store_dir, sessions)
    history.configure(keep_newest=settings.task_history_keep)
    expiry = ExpiryActivities(sessions=sessions, store=store, client=client)
    tasks = DebianTasks(
        sessions=sessions,
        store=store,
        executor=make_executor(settings.executor),
        scratch_dir=settings.scratch_dir,
        heartbeat_interval=settings.heartbeat_interval,
        expiration_days=settings.artifact_expiration_days,
    )
    campaigns = CampaignTasks(
        sessions=sessions,
        store=store,
        scratch_dir=settings.scratch_dir,
        expiration_days=settings.artifact_expiration_days,
    )
    # Activities are synchronous (subprocesses, SQLAlchemy); each runs in a thread of this pool.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_concurrent_activities)
    worker = Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=[*tasks.all(), *campaigns.all(), *expiry.all()],
        activity_executor=pool,
        max_concurrent_activities=settings.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    return DebflowWorker(worker, pool, engine)


async def run_worker(
    client: Client, settings: Settings, database_url: str, task_queue: str | None = None
) -> None:
    parts = build_worker(client, settings, database_url, task_queue=task_queue)
    worker = parts.worker
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Finish what can finish, then stop polling; Temporal retries whatever was interrupted.
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.shutdown()))
    try:
        log.info("worker polling %s", task_queue or settings.task_queue)
        await worker.run()
    finally:
        parts.close()


def main_sync(settings: Settings, task_queue: str | None = None) -> None:
    from worker.connect import connect_temporal, resolve

    async def go() -> None:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        await run_worker(client, settings, endpoints.database_url, task_queue)

    asyncio.run(go())
