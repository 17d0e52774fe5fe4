"""Benchmark: the glibc campaign end to end with the SIMULATED executor, against raw no-op activities.

Starts a private dev stack (embedded PostgreSQL, the Temporal dev server with temporal-dev.yaml's
pragmas, worker processes), imports bookworm, runs the campaign with zero-duration simulated tests,
then runs the same number of no-op activities on the same server, partitioned the same way.
Prints the figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _database import BOOKWORM as DATA
from _stack import cpu_seconds, peak_rss_mb, private_stack

from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Simulation
from models.db import make_engine, make_sessionmaker
from worker.connect import connect_temporal


@activity.defn(name="noop")
async def noop() -> None:
    return None


@workflow.defn(name="RawNoopBatch")
class RawNoopBatch:
    """The baseline: `count` no-op activities with at most `in_flight` pending."""

    @workflow.run
    async def run(self, count: int, in_flight: int) -> int:
        done = 0
        while done < count:
            chunk = min(in_flight, count - done)
            await asyncio.gather(
                *(
                    workflow.execute_activity(noop, start_to_close_timeout=timedelta(minutes=1))
                    for _ in range(chunk)
                )
            )
            done += chunk
        return done


@workflow.defn(name="RawNoopRoot")
class RawNoopRoot:
    @workflow.run
    async def run(self, counts: list[int], in_flight: int, batches_in_flight: int) -> int:
        total, queue, running = 0, list(enumerate(counts)), set()
        while queue or running:
            while queue and len(running) < batches_in_flight:
                index, count = queue.pop(0)
                running.add(
                    asyncio.ensure_future(
                        workflow.execute_child_workflow(
                            RawNoopBatch.run,
                            args=[count, in_flight],
                            id=f"{workflow.info().workflow_id}-{index}",
                        )
                    )
                )
            finished, pending = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running = set(pending)
            total += sum(task.result() for task in finished)
        return total


ACTIVITY_SLOTS = 64


async def raw_baseline(
    client: Client, tasks: int, batch: int, in_flight: int, batches_in_flight: int
) -> float:
    counts = [min(batch, tasks - i) for i in range(0, tasks, batch)]
    queue = f"raw-{os.getpid()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[RawNoopRoot, RawNoopBatch],
        activities=[noop],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_activities=ACTIVITY_SLOTS,
    ):
        started = time.monotonic()
        done = await client.execute_workflow(
            RawNoopRoot.run,
            args=[counts, in_flight, batches_in_flight],
            id=f"raw-noop-{os.getpid()}-{time.time_ns()}",
            task_queue=queue,
        )
        seconds = time.monotonic() - started
    assert done == tasks
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, help="only the first N targets (a quick run)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for the campaign")
    parser.add_argument("--trigger", default="glibc")
    args = parser.parse_args()

    # The campaign's test queue gets the same slots as the raw baseline's worker.
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
            trigger_source=args.trigger,
            trigger_version="9999+bench",
            suite="bookworm",
            simulation=Simulation(seed=1, duration_scale=0.0),
            target_limit=args.limit,
        )
        assert stack.temporal is not None
        server, workers = stack.temporal.pid, [p.pid for p in stack.worker_processes]
        cpu_before = (cpu_seconds(server), sum(cpu_seconds(w) for w in workers))
        started = time.monotonic()
        handle = await start_campaign(client, params, stack.settings.task_queue)
        report = await handle.result()
        campaign_s = time.monotonic() - started
        campaign_cpu = (
            cpu_seconds(server) - cpu_before[0],
            sum(cpu_seconds(w) for w in workers) - cpu_before[1],
        )
        rss = max(peak_rss_mb(p.pid) for p in stack.worker_processes)
        tasks = report.tests_run
        print(
            f"SIMULATED campaign {handle.id}: {report.targets} targets, {tasks} test runs "
            f"in {campaign_s:.1f} s "
            f"({tasks / campaign_s:.0f}/s), {report.batches} batches, verdicts {report.counts}"
        )
        # The raw baseline's worker is this process: its CPU time is the baseline's worker CPU.
        cpu_before = (cpu_seconds(server), cpu_seconds(os.getpid()))
        raw_s = await raw_baseline(
            client, tasks, 2 * params.batch_size, params.tests_in_flight, params.batches_in_flight
        )
        raw_cpu = (cpu_seconds(server) - cpu_before[0], cpu_seconds(os.getpid()) - cpu_before[1])
        print(f"raw no-op activities: {tasks} in {raw_s:.1f} s ({tasks / raw_s:.0f}/s)")
        per_task = {
            name: [round(1000 * seconds / tasks, 2) for seconds in cpu]
            for name, cpu in (("campaign", campaign_cpu), ("raw", raw_cpu))
        }
        print(
            "CPU ms per task (Temporal server, worker): "
            f"campaign {per_task['campaign']}, raw {per_task['raw']} on {os.cpu_count()} cores"
        )
        print(f"largest history: {report.max_history_events} events; peak worker RSS {rss:.0f} MB")
        figures = {
            "tasks": tasks,
            "tasks_per_s": round(tasks / campaign_s, 1),
            "raw_per_s": round(tasks / raw_s, 1),
            "ratio": round(raw_s / campaign_s, 3),
            "max_history_events": report.max_history_events,
            "peak_worker_rss_mb": round(rss, 1),
            "server_cpu_ms_per_task": per_task["campaign"][0],
            "worker_cpu_ms_per_task": per_task["campaign"][1],
            "raw_server_cpu_ms_per_task": per_task["raw"][0],
            "raw_worker_cpu_ms_per_task": per_task["raw"][1],
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
