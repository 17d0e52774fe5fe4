"""Chaos runs: a private stack of PostgreSQL, the Temporal dev server and worker processes, a supervisor that
kills and restarts its parts while a SIMULATED campaign runs, and the figures that say whether anything was
lost, duplicated, spuriously failed or rebuilt. Used by tests/chaos/ and bench/chaos.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.campaigns.simulated import simulated_outcome
from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from models.campaign import CampaignInput, CampaignReport, RunResult, Side, Simulation, Verdict
from models.db import make_engine, make_sessionmaker
from models.verdicts import after_rerun, compare
from support.synthetic_suite import write_suite
from worker.connect import connect_temporal
from worker.devstack import DevStack, private_settings

TRIGGER_VERSION = "1.1"


def targets_of(trigger: str, dependants: int) -> list[tuple[str, str]]:
    """The campaign's targets in support/synthetic_suite.py's archive: the trigger and its dependants."""
    return [(trigger, "1.0")] + [(f"{trigger}-user{i:04d}", f"2.{i}") for i in range(dependants)]


def expected_verdicts(seed: int, targets: list[tuple[str, str]], arch: str = "amd64") -> dict[str, Verdict]:
    """What the campaign must decide: simulated outcomes are a pure function of their inputs."""
    simulation = Simulation(seed=seed)
    verdicts = {}
    for source, version in targets:
        new = simulated_outcome(simulation, source, version, arch, Side.NEW, 1)[0]
        reference = simulated_outcome(simulation, source, version, arch, Side.REFERENCE, 1)[0]
        verdict = compare(new, reference)
        if verdict is Verdict.REGRESSION:
            verdict = after_rerun(simulated_outcome(simulation, source, version, arch, Side.NEW, 2)[0])
        verdicts[source] = verdict
    return verdicts


def expected_logs(seed: int, targets: list[tuple[str, str]], arch: str = "amd64") -> int:
    """Log artifacts the campaign stores: one per FAIL run (new, reference, re-run of a regression)."""
    simulation = Simulation(seed=seed)
    logs = 0
    for source, version in targets:
        new = simulated_outcome(simulation, source, version, arch, Side.NEW, 1)[0]
        reference = simulated_outcome(simulation, source, version, arch, Side.REFERENCE, 1)[0]
        logs += (new is RunResult.FAIL) + (reference is RunResult.FAIL)
        if compare(new, reference) is Verdict.REGRESSION:
            logs += simulated_outcome(simulation, source, version, arch, Side.NEW, 2)[0] is RunResult.FAIL
    return logs


class ChaosStack:
    """DevStack pieces in a temporary state directory with free ports; workers run the simulated tests."""

    def __init__(self, root: Path, *, workers: int, slots: int, journal: Path) -> None:
        self.root, self.workers, self.journal = root, workers, journal
        self.settings = private_settings(root, executor="host")
        self.base_env = {
            "DEBFLOW_MAX_CONCURRENT_ACTIVITIES": str(slots),
            "DEBFLOW_FAULT_JOURNAL": str(journal),
            # Short heartbeats: a cancelled or killed test is noticed quickly.
            "DEBFLOW_HEARTBEAT_INTERVAL_S": "1",
        }
        self.stack = DevStack(self.settings, workers=workers, say=lambda _: None, worker_env=self.base_env)

    def start(self) -> None:
        self.stack.start()

    def stop(self) -> None:
        self.stack.stop()

    def set_fault_rate(self, rate: float) -> None:
        """Replace every worker by one with fault injection at `rate` after run_campaign_test stores."""
        self.stack.worker_env = {
            **self.stack.worker_env,
            "DEBFLOW_FAULT_AFTER_STORE_RATE": str(rate),
            "DEBFLOW_FAULT_ACTIVITIES": "run_campaign_test",
        }
        for process in list(self.stack.worker_processes):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            self.stack.worker_processes.remove(process)
        for index in range(self.workers):
            self.stack.start_worker(self.root / "logs" / f"worker-rate{rate}-{index}.log")

    def import_suite(self, name: str, trigger: str, dependants: int) -> None:
        (self.root / name).mkdir()
        sources, packages, release, keyring = write_suite(self.root / name, trigger, dependants)
        engine = make_engine(self.stack.database_url)
        try:
            import_suite(
                sessions=make_sessionmaker(engine),
                name=name,
                sources=sources,
                packages=[packages],
                release=release,
                keyring=keyring,
            )
        finally:
            engine.dispose()

    async def client(self) -> Client:
        return await connect_temporal({"target_host": self.stack.temporal_address, "namespace": "default"})


@dataclass
class Supervisor:
    """Kills a random worker every `kill_every_s` (about) and restarts it, `max_kills` times at most;
    restarts the Temporal dev server once at `temporal_at_s` and PostgreSQL once at `postgres_at_s`
    (seconds after start)."""

    chaos: ChaosStack
    kill_every_s: float
    temporal_at_s: float | None
    postgres_at_s: float | None
    seed: int = 0
    max_kills: int | None = None
    events: list[str] = field(default_factory=list)
    kills: int = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=self._loop, args=(stop,), name="chaos-supervisor", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(120)
            self.chaos.stack.restart_dead_workers()

    def _loop(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        started = time.monotonic()
        next_kill = started + self.kill_every_s * rng.uniform(0.5, 1.5)
        temporal_at = started + self.temporal_at_s if self.temporal_at_s is not None else None
        postgres_at = started + self.postgres_at_s if self.postgres_at_s is not None else None
        while not stop.wait(0.2):
            now = time.monotonic()
            stack = self.chaos.stack
            stack.restart_dead_workers()
            may_kill = self.max_kills is None or self.kills < self.max_kills
            if may_kill and now >= next_kill and stack.worker_processes:
                victim = rng.choice(stack.worker_processes)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                self.kills += 1
                self._note(started, f"SIGKILL worker {victim.pid}")
                stack.restart_dead_workers()
                next_kill = now + self.kill_every_s * rng.uniform(0.5, 1.5)
            if temporal_at is not None and now >= temporal_at:
                temporal_at = None
                stack.restart_temporal(signal.SIGKILL)
                self._note(started, "restarted the Temporal dev server (SIGKILL, same db file)")
            if postgres_at is not None and now >= postgres_at:
                postgres_at = None
                stack.restart_postgres(signal.SIGQUIT)
                self._note(started, "restarted PostgreSQL (immediate shutdown, crash recovery)")

    def _note(self, started: float, what: str) -> None:
        self.events.append(f"{time.monotonic() - started:6.1f} s  {what}")


@dataclass
class CampaignFigures:
    tasks: int
    spurious_failures: int
    duplicate_artifacts: int
    lost_results: int
    rebuilds: int
    extra_attempts: int
    seconds: float
    faults_injected: int = 0


async def run_campaign(
    chaos: ChaosStack,
    client: Client,
    *,
    suite: str,
    trigger: str,
    seed: int,
    duration_scale: float,
    batch_size: int,
) -> tuple[str, CampaignReport, float]:
    params = CampaignInput(
        trigger_source=trigger,
        trigger_version=TRIGGER_VERSION,
        trigger_binaries=[f"lib{trigger}1"],
        suite=suite,
        batch_size=batch_size,
        simulation=Simulation(seed=seed, duration_scale=duration_scale),
        # A killed worker's test is retried once its start-to-close timeout passes: keep it short.
        test_timeout_s=max(8.0, 6 * duration_scale),
    )
    started = time.monotonic()
    handle = await start_campaign(client, params, chaos.settings.task_queue)
    while True:
        try:
            report = await handle.result()
            break
        except RPCError as e:
            # The supervisor restarts the Temporal server: wait for it like any client would.
            if e.status == RPCStatusCode.NOT_FOUND or time.monotonic() - started > 1800:
                raise
            await asyncio.sleep(1)
    return handle.id, report, time.monotonic() - started


async def measure(
    chaos: ChaosStack,
    client: Client,
    campaign_id: str,
    report: CampaignReport,
    seconds: float,
    expected: dict[str, Verdict],
    logs_expected: int,
) -> CampaignFigures:
    """Compare a finished campaign with what its simulated outcomes say it must be."""
    actual = {v.source: v.verdict for v in report.notable}
    wanted = {s: v for s, v in expected.items() if v not in (Verdict.PASS, Verdict.NEUTRAL)}
    differing = {s for s in set(actual) | set(wanted) if actual.get(s) != wanted.get(s)}
    neutral_wanted = sum(v is Verdict.NEUTRAL for v in expected.values())
    spurious = len(differing) + abs(report.counts.get(Verdict.NEUTRAL, 0) - neutral_wanted)

    engine = make_engine(chaos.stack.database_url)
    try:
        with engine.connect() as conn:
            logs = conn.execute(
                text("SELECT count(*) FROM artifact WHERE workflow_id LIKE :prefix AND category = :category"),
                {"prefix": campaign_id.replace("_", r"\_") + "-%", "category": "debian:autopkgtest"},
            ).scalar_one()
            linked = [v.new_log_artifact_id for v in report.notable if v.new_log_artifact_id] + [
                v.reference_log_artifact_id for v in report.notable if v.reference_log_artifact_id
            ]
            missing_links = (
                len(linked)
                - conn.execute(
                    text("SELECT count(*) FROM artifact WHERE id = ANY(:ids)"), {"ids": linked}
                ).scalar_one()
            )
            unfinished_references = conn.execute(
                text(
                    "SELECT count(*) FROM collection_item i JOIN collection c ON c.id = i.collection_id "
                    "WHERE c.name = :suite AND i.removed_at IS NULL AND i.data ->> 'state' = 'running'"
                ),
                {"suite": report.suite},
            ).scalar_one()
    finally:
        engine.dispose()
    lost = (len(expected) - sum(report.counts.values())) + max(0, logs_expected - logs)
    lost += missing_links + unfinished_references
    return CampaignFigures(
        tasks=report.tests_run,
        spurious_failures=spurious,
        duplicate_artifacts=max(0, logs - logs_expected),
        lost_results=lost,
        rebuilds=rebuilds(chaos.journal, campaign_id),
        extra_attempts=await extra_attempts(client, campaign_id, report.batches),
        seconds=round(seconds, 1),
        faults_injected=faults_injected(chaos.root / "logs", campaign_id),
    )


def rebuilds(journal: Path, campaign_id: str) -> int:
    """Runs that reached "stored" twice: a retry ran the test again instead of reusing its stored log."""
    if not journal.exists():
        return 0
    stored = collections.Counter(
        (parts[1], parts[2])
        for parts in (line.split("\t") for line in journal.read_text().splitlines())
        if len(parts) == 4 and parts[1].startswith(campaign_id)
    )
    return sum(count - 1 for count in stored.values())


def faults_injected(logs: Path, campaign_id: str) -> int:
    return sum(
        ("debflow.faults" in line and f"fault injection: run_campaign_test of {campaign_id}" in line)
        for path in logs.glob("worker-*.log")
        for line in path.read_text(errors="replace").splitlines()
    )


async def extra_attempts(client: Client, campaign_id: str, batches: int) -> int:
    """Activity attempts beyond the first, over every run of the campaign and its batches (the attempt
    number of an ActivityTaskStarted event is the attempt that finished)."""
    ids = [campaign_id] + [f"{campaign_id}-amd64-batch-{i:04d}" for i in range(batches)]
    extra = 0
    for workflow_id in ids:
        async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    extra += event.activity_task_started_event_attributes.attempt - 1
    return extra


def figures_json(figures: CampaignFigures, **more: object) -> str:
    return json.dumps({**figures.__dict__, **more})
