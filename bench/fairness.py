"""Benchmark: does a small upload get served promptly while a big campaign saturates the workers?

On a private dev stack with one worker process of 4 activity slots, a SIMULATED campaign of a few
hundred targets (tests of 0.05-0.5 s) runs at campaign priority (4). In its middle a small SIMULATED
"upload" — a 5-target campaign of another trigger at upload priority (2), with its own fairness key —
is started; its latency is compared with the same small upload on idle workers, measured in the same
run, and the big campaign's throughput with and without the interruption gives the throughput loss.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # for support/

from _stack import private_stack

from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Simulation
from models.db import make_engine, make_sessionmaker
from support.synthetic_suite import write_suite
from worker.connect import connect_temporal

UPLOAD_PRIORITY, CAMPAIGN_PRIORITY = 2, 4


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=300, help="targets of the big campaign")
    args = parser.parse_args()

    async with private_stack(workers=1, max_concurrent_activities=4) as stack:
        engine = make_engine(stack.database_url)
        with tempfile.TemporaryDirectory() as tmp:
            for name, size in (("big", args.targets - 1), ("small", 4)):
                folder = Path(tmp) / name
                folder.mkdir()
                sources, packages, release, keyring = write_suite(folder, f"lib{name}", size)
                import_suite(
                    sessions=make_sessionmaker(engine),
                    name=f"fair-{name}",
                    sources=sources,
                    packages=[packages],
                    release=release,
                    keyring=keyring,
                )
        engine.dispose()
        client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
        queue = stack.settings.task_queue
        simulation = Simulation(seed=11, duration_scale=0.1)

        async def upload(version: str, priority_key: int = UPLOAD_PRIORITY) -> float:
            params = CampaignInput(
                trigger_source="libsmall", trigger_version=version, suite="fair-small", simulation=simulation
            )
            started = time.monotonic()
            await (await start_campaign(client, params, queue, priority_key=priority_key)).result()
            return time.monotonic() - started

        async def campaign(version: str, interrupt: int | None) -> tuple[float, int, float | None]:
            """The big campaign; `interrupt`: the priority of a small upload started in its middle."""
            params = CampaignInput(
                trigger_source="libbig", trigger_version=version, suite="fair-big", simulation=simulation
            )
            started = time.monotonic()
            handle = await start_campaign(client, params, queue, priority_key=CAMPAIGN_PRIORITY)
            busy = None
            if interrupt is not None:
                await asyncio.sleep(8)  # well into the campaign: the queue holds hundreds of its tests
                busy = await upload(f"{version}.1", priority_key=interrupt)
            report = await handle.result()
            return time.monotonic() - started, report.tests_run, busy

        await upload("0.9")  # fills the small suite's references: both measured uploads then reuse them
        idle = await upload("1.0")
        print(f"SIMULATED 5-target upload on idle workers: {idle:.2f} s", flush=True)
        alone_s, alone_runs, _ = await campaign("1.0", interrupt=None)
        alone_rate = alone_runs / alone_s
        print(f"SIMULATED campaign alone: {alone_runs} runs in {alone_s:.1f} s ({alone_rate:.1f}/s)")
        with_s, with_runs, busy = await campaign("2.0", interrupt=UPLOAD_PRIORITY)
        _, _, unprioritised = await campaign("3.0", interrupt=CAMPAIGN_PRIORITY)
        assert busy is not None and unprioritised is not None
        print(
            f"SIMULATED campaign with the upload: {with_runs} runs in {with_s:.1f} s "
            f"({with_runs / with_s:.1f}/s); the upload took {busy:.2f} s"
        )
        print(f"the same upload at the campaign's priority took {unprioritised:.2f} s")
        # The second campaign reuses the first one's references: compare rates, not times.
        loss = 1 - (with_runs / with_s) / alone_rate
        print(
            json.dumps(
                {
                    "latency_ratio": round(busy / idle, 2),
                    "idle_latency_s": round(idle, 2),
                    "busy_latency_s": round(busy, 2),
                    "campaign_throughput_loss": round(loss, 3),
                    "busy_latency_same_priority_s": round(unprioritised, 2),
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
