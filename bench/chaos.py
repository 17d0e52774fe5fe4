"""Benchmark: a SIMULATED campaign of 500+ tests over 3 worker processes, once without faults and once while a
supervisor SIGKILLs a random worker every few seconds (and restarts it), restarts the Temporal dev server
once (SIGKILL; its SQLite file keeps the state), restarts PostgreSQL once (immediate shutdown) and a fault
is injected after a test's log is stored, before the activity completes.

Prints what happened and the figures; the last line is JSON with tasks, spurious_failures,
duplicate_artifacts, lost_results, rebuilds, extra_attempts, seconds (of the campaign under chaos), and
baseline_seconds and overhead_ratio (chaos / baseline, same campaign, same stack, same run).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for support/

from support.chaos_harness import (
    CampaignFigures,
    ChaosStack,
    Supervisor,
    expected_logs,
    expected_verdicts,
    figures_json,
    measure,
    run_campaign,
    targets_of,
)
from worker.postgres import world_readable_tempdir


async def one_campaign(
    chaos: ChaosStack, suite: str, trigger: str, dependants: int, seed: int, scale: float
) -> CampaignFigures:
    client = await chaos.client()
    campaign_id, report, seconds = await run_campaign(
        chaos, client, suite=suite, trigger=trigger, seed=seed, duration_scale=scale, batch_size=100
    )
    targets = targets_of(trigger, dependants)
    return await measure(
        chaos,
        client,
        campaign_id,
        report,
        seconds,
        expected_verdicts(seed, targets),
        expected_logs(seed, targets),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dependants", type=int, default=260, help="targets besides the trigger")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4, help="activity slots per worker")
    parser.add_argument("--duration-scale", type=float, default=0.4, help="simulated test durations")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between worker kills (about)")
    parser.add_argument("--fault-rate", type=float, default=0.5, help="first tries failed after storing")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    root = world_readable_tempdir("debflow-bench-chaos-")
    trigger = f"libchaos{uuid.uuid4().hex[:6]}"
    chaos = ChaosStack(root, workers=args.workers, slots=args.slots, journal=root / "faults.journal")
    try:
        chaos.start()
        for suite in ("chaos-baseline", "chaos-faults"):  # two names: no shared references between runs
            chaos.import_suite(suite, trigger, args.dependants)
        print(f"stack in {root}; {args.workers} workers x {args.slots} slots; trigger {trigger}", flush=True)

        baseline = asyncio.run(
            one_campaign(chaos, "chaos-baseline", trigger, args.dependants, args.seed, args.duration_scale)
        )
        print(f"without faults: {baseline}", flush=True)

        chaos.set_fault_rate(args.fault_rate)
        supervisor = Supervisor(
            chaos,
            kill_every_s=args.kill_every,
            temporal_at_s=0.3 * baseline.seconds,
            postgres_at_s=0.6 * baseline.seconds,
            seed=args.seed,
        )
        with supervisor.running():
            faulty = asyncio.run(
                one_campaign(chaos, "chaos-faults", trigger, args.dependants, args.seed, args.duration_scale)
            )
        for event in supervisor.events:
            print(event)
        print(f"with faults: {faulty}", flush=True)
        print(
            figures_json(
                faulty,
                baseline_seconds=baseline.seconds,
                overhead_ratio=round(faulty.seconds / baseline.seconds, 2),
                worker_kills=supervisor.kills,
                baseline_extra_attempts=baseline.extra_attempts,
                baseline_spurious_failures=baseline.spurious_failures,
            )
        )
    finally:
        chaos.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
