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
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities import faults, history, metrics
from activities.campaign_tasks import CampaignTasks
from activities.debian_tasks import DebianTasks
from activities.environments import EnvironmentStore
from activities.executors import Executor, HostExecutor
from activities.expiry import ExpiryActivities
from activities.resume import ResumeCampaignTests
from activities.store import ArtifactStore
from activities.timeouts import TimeoutEstimator
from activities.unshare import UnshareExecutor
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


def make_executor(settings: Settings, store: ArtifactStore) -> Executor:
    """The executor the settings name: `unshare` (the default) or `host` (development only)."""
    if settings.executor == "host":
        return HostExecutor()
    environments = EnvironmentStore(
        store=store,
        mirror=settings.mirror,
        cache_dir=settings.scratch_dir / "environments",
        max_age_days=settings.environment_max_age_days,
        expiration_days=settings.artifact_expiration_days,
    )
    return UnshareExecutor(environments)


def build_worker(
    client: Client, settings: Settings, database_url: str, *, task_queue: str | None = None
) -> DebflowWorker:
    """A worker polling `task_queue` (default: the settings') for workflows and activities."""
    engine = make_engine(database_url, pool_size=settings.max_concurrent_activities + 1)
    metrics.instrument_engine(engine)
    sessions = make_sessionmaker(engine)
    store = ArtifactStore(settings.store_dir, sessions)
    history.configure(keep_newest=settings.task_history_keep)
    faults.configure(
        rate=settings.fault_after_store_rate,
        activities=settings.fault_activities,
        journal=settings.fault_journal,
    )
    expiry = ExpiryActivities(sessions=sessions, store=store, client=client)
    tasks = DebianTasks(
        sessions=sessions,
        store=store,
        executor=make_executor(settings, store),
        scratch_dir=settings.scratch_dir,
        heartbeat_interval=settings.heartbeat_interval,
        expiration_days=settings.artifact_expiration_days,
        max_unpacked_bytes=settings.max_unpacked_bytes,
    )
    estimator = TimeoutEstimator(
        sessions=sessions,
        floor_s=settings.timeout_floor_s,
        factor=settings.timeout_history_factor,
        min_samples=settings.timeout_history_min_samples,
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
        activities=[*tasks.all(), estimator.estimate_timeouts, *campaigns.all(), *expiry.all()],
        activity_executor=pool,
        max_concurrent_activities=settings.max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=[ResumeCampaignTests(store)],
        # Every heartbeat reaches the server at once, so a cancellation reaches the activity (which then
        # kills its process group) within one heartbeat interval instead of up to 0.8 x heartbeat timeout.
        max_heartbeat_throttle_interval=timedelta(seconds=settings.heartbeat_interval),
        default_heartbeat_throttle_interval=timedelta(seconds=settings.heartbeat_interval),
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
        runtime = None
        if settings.metrics_address:
            telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.metrics_address))
            runtime = Runtime(telemetry=telemetry)
            metrics.install(runtime.metric_meter)
            log.info("metrics on http://%s/metrics", settings.metrics_address)
        client = await connect_temporal(endpoints.temporal, runtime=runtime)
        await run_worker(client, settings, endpoints.database_url, task_queue)

    asyncio.run(go())
