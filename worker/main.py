"""Building and running a worker process: activities, workflows, the executor and the database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.campaigns.archive_builds import ArchiveBuilds
from activities.campaigns.archive_files import PoolCache
from activities.campaigns.campaign_tasks import CampaignTasks
from activities.campaigns.simulated_tests import SimulatedTests
from activities.debci.jobs import DebciJobTasks
from activities.faults import FaultInjector
from activities.metrics import Metrics, instrument_engine
from activities.qa.tasks import QaTasks
from activities.services.webhooks import WebhookActivities
from activities.storage.expiry import ExpiryActivities
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore
from activities.tools.environments import EnvironmentStore
from activities.tools.executors import Executor, HostExecutor, host_architecture
from activities.tools.runs import ToolRuns
from activities.tools.testbeds import Testbeds
from activities.tools.unshare import UnshareExecutor
from activities.uploads.debian_tasks import DebianTasks
from activities.uploads.task_errors import TaskErrors
from activities.uploads.timeouts import TimeoutEstimator
from models.db import make_engine, make_sessionmaker
from models.payloads import TaskTimeouts
from worker.settings import Settings
from workflows.campaign import CampaignWorkflow
from workflows.campaign_batch import CampaignBatchWorkflow
from workflows.debci_jobs import DebciJobsWorkflow
from workflows.expiry import ExpiryWorkflow
from workflows.notifier import NotifierWorkflow, WebhookDeliveryWorkflow
from workflows.queues import Capability, Kind, parse_capabilities
from workflows.upload_pipeline import UploadPipelineWorkflow

WORKFLOWS: Sequence[type] = (
    UploadPipelineWorkflow,
    CampaignWorkflow,
    CampaignBatchWorkflow,
    DebciJobsWorkflow,
    ExpiryWorkflow,
    NotifierWorkflow,
    WebhookDeliveryWorkflow,
)

log = logging.getLogger("debflow.worker")


@dataclass
class DebflowWorker:
    """One Temporal worker per capability queue and the resources their activities share.

    `async with` runs them all (as tests do); `run` until `shutdown`; `close` after they stopped.
    """

    workers: dict[Capability, Worker]
    pool: concurrent.futures.ThreadPoolExecutor
    engine: Engine
    activities: dict[Kind, list[Callable[..., Any]]] = field(default_factory=dict)

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers.values()))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers.values()))

    async def __aenter__(self) -> DebflowWorker:
        self._stack = contextlib.AsyncExitStack()
        for worker in self.workers.values():
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()


def slots(settings: Settings, kind: Kind) -> int:
    """Concurrent activities per capability queue (docs/operations.md "Worker pools")."""
    per_kind = {
        Kind.CONTROL: settings.control_slots,
        Kind.BUILD: settings.build_slots,
        Kind.TEST: settings.test_slots,
        Kind.LINTIAN: settings.lintian_slots,
    }
    return per_kind[kind] or settings.max_concurrent_activities


def capabilities(settings: Settings, text: str | None = None) -> list[Capability]:
    """The capabilities asked for; builds and tests for another architecture than the host's are refused
    (both executors run the host's architecture only)."""
    host = host_architecture()
    found = parse_capabilities(
        text or settings.capabilities, host_architecture=host, known_architectures=settings.architectures
    )
    foreign = [str(c) for c in found if c.architecture not in ("", host)]
    if foreign:
        raise ValueError(f"this host builds and tests for {host} only, not {', '.join(foreign)}")
    return found


def environment_store(settings: Settings, store: ArtifactStore) -> EnvironmentStore:
    """The build and test environment tarballs of this worker's mirror."""
    return EnvironmentStore(
        store=store,
        mirror=settings.mirror,
        cache_dir=settings.scratch_dir / "environments",
        max_age_days=settings.environment_max_age_days,
        expiration_days=settings.artifact_expiration_days,
    )


def make_executor(settings: Settings, store: ArtifactStore) -> Executor:
    """The executor the settings name: `unshare` (the default) or `host` (development only)."""
    if settings.executor == "host":
        return HostExecutor()
    testbeds = Testbeds(
        root=settings.scratch_dir / "testbeds",
        # The same directory as the campaigns' cache: a pool file is downloaded once per host for both.
        pool_cache=PoolCache(
            settings.scratch_dir / "archive-cache", max_age_days=settings.environment_max_age_days
        ),
        base_mirror=settings.mirror,
        base_suite=settings.testbed_base_suite,
        max_age_days=settings.environment_max_age_days,
    )
    return UnshareExecutor(environment_store(settings, store), testbeds)


def build_worker(
    client: Client,
    settings: Settings,
    database_url: str,
    *,
    task_queue: str | None = None,
    only: list[Capability] | None = None,
    meter: MetricMeter = MetricMeter.noop,
) -> DebflowWorker:
    """Workers for the capabilities (default: the settings'), on queues named from `task_queue`
    (default: the settings' control queue); debflow's metrics go to `meter`."""
    wanted = only or capabilities(settings)
    control = task_queue or settings.task_queue
    activity_slots = sum(slots(settings, c.kind) for c in wanted)
    engine = make_engine(database_url, pool_size=activity_slots + 1)
    metrics = Metrics(meter)
    instrument_engine(engine, metrics)
    sessions = make_sessionmaker(engine)
    store = ArtifactStore(settings.store_dir, sessions, metrics=metrics)
    history = TaskHistoryWriter(keep_newest=settings.task_history_keep, metrics=metrics)
    faults = FaultInjector(
        rate=settings.fault_after_store_rate,
        activities=settings.fault_activities,
        journal=settings.fault_journal,
    )
    expiry = ExpiryActivities(sessions=sessions, store=store, client=client, metrics=metrics)
    webhooks = WebhookActivities(
        sessions=sessions,
        urls=settings.webhook_urls,
        secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
        history_keep=settings.task_history_keep,
    )
    runs = ToolRuns(
        sessions=sessions,
        store=store,
        executor=make_executor(settings, store),
        scratch_dir=settings.scratch_dir,
        heartbeat_interval=settings.heartbeat_interval_s,
        expiration_days=settings.artifact_expiration_days,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        max_archive_members=settings.max_archive_members,
        history=history,
        faults=faults,
    )
    uploads = DebianTasks(runs)
    pool_cache = PoolCache(
        settings.scratch_dir / "archive-cache", max_age_days=settings.environment_max_age_days
    )
    # piuparts always runs in a testbed from the suite's environment tarball, whatever the executor.
    qa = QaTasks(runs, pool_cache=pool_cache, environments=environment_store(settings, store))
    # ArchiveBuilds is ArchiveTests with the rebuild campaigns' build activity: one pool cache for both.
    archive_tests = ArchiveBuilds(
        runs,
        pool_cache=pool_cache,
        missing_file_tries=settings.missing_file_tries,
        missing_file_backoff_s=settings.missing_file_backoff_s,
    )
    estimator = TimeoutEstimator(
        sessions=sessions,
        floor_s=settings.timeout_floor_s,
        factor=settings.timeout_history_factor,
        min_samples=settings.timeout_history_min_samples,
        policy=TaskTimeouts(
            build_s=settings.build_timeout_s,
            lintian_s=settings.lintian_timeout_s,
            autopkgtest_s=settings.autopkgtest_timeout_s,
            heartbeat_s=settings.heartbeat_timeout_s,
            queue_wait_s=settings.queue_wait_s,
        ),
    )
    campaigns = CampaignTasks(
        client=client,
        sessions=sessions,
        store=store,
        scratch_dir=settings.scratch_dir,
        expiration_days=settings.artifact_expiration_days,
        history=history,
    )
    simulated_tests = SimulatedTests(
        client=client,
        store=store,
        scratch_dir=settings.scratch_dir,
        expiration_days=settings.artifact_expiration_days,
        faults=faults,
    )
    by_kind: dict[Kind, list[Callable[..., Any]]] = {
        Kind.CONTROL: [
            uploads.describe_upload,
            estimator.estimate_timeouts,
            TaskErrors(sessions=sessions, history=history).record_task_error,
            *campaigns.database_activities(),
            *DebciJobTasks(sessions=sessions, history=history).all(),
            *expiry.all(),
            *webhooks.all(),
        ],
        Kind.BUILD: [uploads.build_package, archive_tests.run_archive_build],
        Kind.LINTIAN: [uploads.run_lintian, qa.run_debdiff, qa.run_blhc],
        Kind.TEST: [
            uploads.run_autopkgtest,
            qa.run_piuparts,
            archive_tests.run_archive_test,
            simulated_tests.run_campaign_test,
        ],
    }
    # Activities are synchronous (subprocesses, SQLAlchemy); each runs in a thread of this pool.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=activity_slots)
    workers = {
        capability: Worker(
            client,
            task_queue=capability.queue(control),
            workflows=list(WORKFLOWS) if capability.kind is Kind.CONTROL else [],
            activities=by_kind[capability.kind],
            activity_executor=pool,
            max_concurrent_activities=slots(settings, capability.kind),
            graceful_shutdown_timeout=timedelta(seconds=10),
            # Every heartbeat reaches the server at once, so a cancellation reaches the activity (which
            # then kills its process group) within one heartbeat interval instead of up to 0.8 x the
            # heartbeat timeout.
            max_heartbeat_throttle_interval=timedelta(seconds=settings.heartbeat_interval_s),
            default_heartbeat_throttle_interval=timedelta(seconds=settings.heartbeat_interval_s),
        )
        for capability in wanted
    }
    return DebflowWorker(workers, pool, engine, by_kind)


async def run_worker(
    client: Client,
    settings: Settings,
    database_url: str,
    task_queue: str | None = None,
    only: list[Capability] | None = None,
    meter: MetricMeter = MetricMeter.noop,
) -> None:
    parts = build_worker(client, settings, database_url, task_queue=task_queue, only=only, meter=meter)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Finish what can finish, then stop polling; Temporal retries whatever was interrupted.
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(parts.shutdown()))
    try:
        for capability, worker in parts.workers.items():
            log.info(
                "polling %s (%s, %d slots)", worker.task_queue, capability, slots(settings, capability.kind)
            )
        await parts.run()
    finally:
        parts.close()


def main_sync(
    settings: Settings, task_queue: str | None = None, only: list[Capability] | None = None
) -> None:
    from worker.connect import connect_temporal, resolve

    async def go() -> None:
        endpoints = resolve(settings)
        runtime, meter = None, MetricMeter.noop
        if settings.metrics_address:
            telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.metrics_address))
            runtime = Runtime(telemetry=telemetry)
            meter = runtime.metric_meter
            log.info("metrics on http://%s/metrics", settings.metrics_address)
        client = await connect_temporal(endpoints.temporal, runtime=runtime)
        await run_worker(client, settings, endpoints.database_url, task_queue, only, meter=meter)

    asyncio.run(go())
