"""Benchmark: a whole-archive rebuild of bookworm with the SIMULATED executor, against raw no-op activities.

The same private dev stack as bench/run_campaign.py (embedded PostgreSQL, the Temporal dev server with
temporal-dev.yaml's pragmas, worker processes); imports bookworm, runs `debflow rebuild --all --simulated`
with zero-duration simulated builds (every amd64 source twice: new and reference), then the same number
of no-op activities on the same server, partitioned the same way. Prints the figures; the last line is
JSON {"sources", "tasks", "ratio", "max_history_events", "peak_worker_rss_mb"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _database import BOOKWORM as DATA
from _stack import cpu_seconds, peak_rss_mb, private_stack
from run_campaign import ACTIVITY_SLOTS, raw_baseline

from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from models.campaign import CampaignInput, CampaignKind, Simulation
from models.db import make_engine, make_sessionmaker
from worker.connect import connect_temporal


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, help="only the first N sources (a quick run while developing)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for the rebuild")
    args = parser.parse_args()

    async with private_stack(workers=args.workers, test_slots=ACTIVITY_SLOTS) as stack:
        engine = make_engine(stack.database_url)
        started = time.monotonic()
        import_suite(
            sessions=make_sessionmaker(engine),
            name="bookworm",
            sources=DATA / "Sources.xz",
            packages=[DATA / "Packages_amd64.xz"],
            release=DATA / "InRelease",
        )
        engine.dispose()
        print(f"imported bookworm in {time.monotonic() - started:.1f} s", flush=True)

        client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
        params = CampaignInput(
            trigger_source="toolchain",
            trigger_version="9999+bench",
            suite="bookworm",
            simulation=Simulation(seed=1, duration_scale=0.0),
            target_limit=args.limit,
            kind=CampaignKind.REBUILD,
            all_sources=True,
        )
        assert stack.temporal is not None
        server, workers = stack.temporal.pid, [p.pid for p in stack.worker_processes]
        cpu_before = (cpu_seconds(server), sum(cpu_seconds(w) for w in workers))
        started = time.monotonic()
        handle = await start_campaign(client, params, stack.settings.task_queue)
        report = await handle.result()
        rebuild_s = time.monotonic() - started
        rebuild_cpu = (
            cpu_seconds(server) - cpu_before[0],
            sum(cpu_seconds(w) for w in workers) - cpu_before[1],
        )
        rss = max(peak_rss_mb(p.pid) for p in stack.worker_processes)
        tasks = report.tests_run
        print(
            f"SIMULATED rebuild {handle.id}: {report.targets} sources, {tasks} builds in {rebuild_s:.1f} s "
            f"({tasks / rebuild_s:.0f}/s), {report.batches} batches, verdicts {report.counts}"
        )
        cpu_before = (cpu_seconds(server), cpu_seconds(os.getpid()))
        raw_s = await raw_baseline(
            client, tasks, 2 * params.batch_size, params.tests_in_flight, params.batches_in_flight
        )
        raw_cpu = (cpu_seconds(server) - cpu_before[0], cpu_seconds(os.getpid()) - cpu_before[1])
        print(f"raw no-op activities: {tasks} in {raw_s:.1f} s ({tasks / raw_s:.0f}/s)")
        per_task = {
            name: [round(1000 * seconds / tasks, 2) for seconds in cpu]
            for name, cpu in (("rebuild", rebuild_cpu), ("raw", raw_cpu))
        }
        print(
            "CPU ms per task (Temporal server, worker): "
            f"rebuild {per_task['rebuild']}, raw {per_task['raw']} on {os.cpu_count()} cores"
        )
        print(f"largest history: {report.max_history_events} events; peak worker RSS {rss:.0f} MB")
        print(
            json.dumps(
                {
                    "sources": report.targets,
                    "tasks": tasks,
                    "ratio": round(raw_s / rebuild_s, 3),
                    "max_history_events": report.max_history_events,
                    "peak_worker_rss_mb": round(rss, 1),
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
