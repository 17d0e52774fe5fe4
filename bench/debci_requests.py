"""Benchmark: britney2's 25,000 test requests after a crash, run by debflow with the SIMULATED executor.

Starts a private dev stack, imports bookworm, and makes 25,000 distinct requests the way britney2 asks
for a perl transition: every reverse dependency of perl with autopkgtests, requested with the trigger
`perl/VERSION` and again with perl and each of a few rebuilt modules as triggers, until 25,000. Measures:
the call accepting them all (`accept_seconds`), the same call again (britney2 resending after a crash:
`duplicate_runs` must be 0), another requester's five requests sent behind them (decided in seconds,
not after the backlog: the fairness key), the drain of the queue (decided jobs per second), and, on the
same stack,
the SIMULATED perl campaign's test runs per second. No test is executed: outcomes are drawn by the
simulated executor. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _database import BOOKWORM as DATA
from _stack import cpu_seconds, private_stack
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.services.debci_jobs import submit_tests
from activities.suites.suite import import_suite, reverse_dependency_targets, source_binaries
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Simulation
from models.db import make_engine, make_sessionmaker
from models.debci import Requester, TestRequest
from worker.connect import connect_temporal
from worker.settings import Settings

SIMULATION = Simulation(seed=7, duration_scale=0.0)
TRIGGER = "perl"
NEW_VERSION = "5.36.0-10"


class BenchContext:
    """The service's view of the stack (activities.services.debci_jobs.Context)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], client: Client) -> None:
        self.settings = settings
        self.sessions = sessions
        self._client = client

    async def temporal(self) -> Client:
        return self._client


def requests_for(sessions: sessionmaker[Session], count: int) -> list[TestRequest]:
    """`count` distinct requests of a perl transition: each test once per trigger set."""
    with sessions() as session:
        _, binaries = source_binaries(session=session, suite="bookworm", source=TRIGGER)
        targets = reverse_dependency_targets(
            session=session, suite="bookworm", binaries=binaries, architecture="amd64", include_source=TRIGGER
        )
    names = sorted({t.source for t in targets})
    rebuilt = [t for t in targets if t.source.startswith("lib") and t.source.endswith("-perl")]
    triggers = [f"{TRIGGER}/{NEW_VERSION}"] + [
        f"{TRIGGER}/{NEW_VERSION} {t.source}/{t.version}+b1" for t in rebuilt
    ]
    made: list[TestRequest] = []
    for trigger in triggers:
        made += [TestRequest(package=name, trigger=trigger, priority=5) for name in names]
        if len(made) >= count:
            break
    print(
        f"{len(names)} reverse dependencies of {TRIGGER} with tests; {len(triggers)} trigger sets available"
    )
    return made[:count]


async def decided(sessions: sessionmaker[Session], ids: list[int], started: float) -> float:
    """Seconds from `started` until the jobs `ids` are decided."""
    while True:
        with sessions() as session:
            pending = session.scalar(
                text("SELECT count(*) FROM debci_job WHERE id = ANY(:ids) AND status IS NULL"), {"ids": ids}
            )
        if not pending:
            return time.monotonic() - started
        await asyncio.sleep(0.05)


async def drain(sessions: sessionmaker[Session], started: float) -> float:
    """Seconds from `started` until no job is pending."""
    while True:
        with sessions() as session:
            pending = session.scalar(text("SELECT count(*) FROM debci_job WHERE status IS NULL"))
        if not pending:
            return time.monotonic() - started
        await asyncio.sleep(0.5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=25_000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    async with private_stack(workers=args.workers, test_slots=64) as stack:
        engine = make_engine(stack.database_url)
        sessions = make_sessionmaker(engine)
        started = time.monotonic()
        import_suite(
            sessions=sessions,
            name="bookworm",
            sources=DATA / "Sources.xz",
            packages=[DATA / "Packages_amd64.xz"],
            release=DATA / "InRelease",
        )
        print(f"imported bookworm in {time.monotonic() - started:.1f} s", flush=True)
        with sessions.begin() as session:
            key_id = session.scalar(
                text("INSERT INTO api_key (name, key_sha256) VALUES ('britney', :h) RETURNING id"),
                {"h": hashlib.sha256(os.urandom(16)).hexdigest()},
            )
            other_id = session.scalar(
                text("INSERT INTO api_key (name, key_sha256) VALUES ('security', :h) RETURNING id"),
                {"h": hashlib.sha256(os.urandom(16)).hexdigest()},
            )
        britney = Requester(id=int(key_id or 0), name="britney")
        security = Requester(id=int(other_id or 0), name="security")
        client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
        context = BenchContext(stack.settings, sessions, client)
        requests = requests_for(sessions, args.requests)
        items = [("bookworm", "amd64", r) for r in requests]
        assert stack.temporal is not None
        server, workers = stack.temporal.pid, [p.pid for p in stack.worker_processes]
        cpu_before = (cpu_seconds(server), sum(cpu_seconds(w) for w in workers))

        started = time.monotonic()
        first = await submit_tests(context, britney, items, simulation=SIMULATION)
        accept_s = time.monotonic() - started
        print(f"accepted {len(items)} requests in {accept_s:.2f} s: {len(first.created)} jobs", flush=True)
        again_started = time.monotonic()
        again = await submit_tests(context, britney, items, simulation=SIMULATION)
        print(
            f"the same call again in {time.monotonic() - again_started:.2f} s: {len(again.created)} jobs "
            f"started, {len(again.joined)} requests joined pending jobs",
            flush=True,
        )
        # Another requester's five requests, at the same priority, while britney2's 25,000 are queued: the
        # fairness key (the requester) gives them their turn at once instead of after the backlog.
        five_started = time.monotonic()
        five = await submit_tests(
            context,
            security,
            [
                (
                    "bookworm",
                    "amd64",
                    TestRequest(package=r.package, trigger="openssl/3.0.11-1~deb12u2", priority=r.priority),
                )
                for r in requests[:5]
            ],
            simulation=SIMULATION,
        )
        five_s = await decided(sessions, five.created, five_started)
        print(f"another requester's 5 requests decided {five_s:.2f} s after they were sent", flush=True)
        drain_s = await drain(sessions, started)
        jobs_cpu = (cpu_seconds(server) - cpu_before[0], sum(cpu_seconds(w) for w in workers) - cpu_before[1])
        with sessions() as session:
            statuses: dict[str, int] = dict(
                session.execute(text("SELECT status, count(*) FROM debci_job GROUP BY status")).all()
            )
            jobs = int(session.scalar(text("SELECT count(*) FROM debci_job")) or 0) - len(five.created)
        print(f"SIMULATED jobs decided in {drain_s:.1f} s ({len(first.created) / drain_s:.0f}/s): {statuses}")

        cpu_before = (cpu_seconds(server), sum(cpu_seconds(w) for w in workers))
        started = time.monotonic()
        handle = await start_campaign(
            client,
            CampaignInput(
                trigger_source=TRIGGER, trigger_version=NEW_VERSION, suite="bookworm", simulation=SIMULATION
            ),
            stack.settings.task_queue,
        )
        report = await handle.result()
        campaign_s = time.monotonic() - started
        campaign_cpu = (
            cpu_seconds(server) - cpu_before[0],
            sum(cpu_seconds(w) for w in workers) - cpu_before[1],
        )
        print(
            f"SIMULATED {TRIGGER} campaign: {report.targets} targets, {report.tests_run} test runs in "
            f"{campaign_s:.1f} s ({report.tests_run / campaign_s:.0f}/s)"
        )
        per_run: dict[str, Any] = {
            "jobs": [round(1000 * c / len(first.created), 2) for c in jobs_cpu],
            "campaign": [round(1000 * c / report.tests_run, 2) for c in campaign_cpu],
        }
        print(f"CPU ms per run (Temporal server, workers): {per_run}")
        engine.dispose()
        drain_per_s = len(first.created) / drain_s
        campaign_per_s = report.tests_run / campaign_s
        figures = {
            "requests": len(items),
            "accept_seconds": round(accept_s, 2),
            "runs_started": len(first.created),
            "duplicate_runs": jobs - len(first.created),  # jobs beyond one per distinct request
            "drain_per_s": round(drain_per_s, 1),
            "campaign_per_s": round(campaign_per_s, 1),
            "other_requester_5_s": round(five_s, 2),
            "ratio": round(drain_per_s / campaign_per_s, 3),
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
