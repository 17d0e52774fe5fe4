"""Chaos in small: a SIMULATED campaign while workers are SIGKILLed, Temporal and PostgreSQL restart and
a fault is injected after a log is stored. Nothing may be lost, duplicated, spuriously failed or rebuilt."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest

from support.chaos_harness import (
    ChaosStack,
    Supervisor,
    expected_logs,
    expected_verdicts,
    measure,
    run_campaign,
    targets_of,
)
from worker.postgres import world_readable_tempdir

# Real Debian tools end to end: minutes, not seconds (`pytest -m "not slow"` leaves it out).
pytestmark = pytest.mark.slow

DEPENDANTS = 30


def _seed_with_failures(trigger: str, wanted: int) -> int:
    """A seed whose campaign stores at least `wanted` logs, so the after-store fault has runs to hit."""
    targets = targets_of(trigger, DEPENDANTS)
    return next(seed for seed in range(10_000) if expected_logs(seed, targets) >= wanted)


def test_campaign_survives_killed_workers_and_restarted_services() -> None:
    root = world_readable_tempdir("debflow-test-chaos-")
    trigger = f"libchaos{uuid.uuid4().hex[:6]}"
    seed = _seed_with_failures(trigger, wanted=8)
    chaos = ChaosStack(root, workers=3, slots=4, journal=root / "faults.journal")
    try:
        chaos.start()
        chaos.set_fault_rate(0.5)
        chaos.import_suite("chaos", trigger, DEPENDANTS)
        supervisor = Supervisor(
            chaos, kill_every_s=4, temporal_at_s=6, postgres_at_s=11, seed=seed, max_kills=4
        )

        async def go() -> None:
            client = await chaos.client()
            with supervisor.running():
                campaign_id, report, seconds = await asyncio.wait_for(
                    run_campaign(
                        chaos,
                        client,
                        suite="chaos",
                        trigger=trigger,
                        seed=seed,
                        duration_scale=0.5,
                        batch_size=15,
                    ),
                    timeout=240,
                )
            targets = targets_of(trigger, DEPENDANTS)
            figures = await measure(
                chaos,
                client,
                campaign_id,
                report,
                seconds,
                expected_verdicts(seed, targets),
                expected_logs(seed, targets),
            )
            print(supervisor.events, figures)
            assert supervisor.kills >= 1
            assert figures.spurious_failures == 0
            assert figures.duplicate_artifacts == 0
            assert figures.lost_results == 0
            assert figures.rebuilds == 0
            assert figures.tasks >= 2 * DEPENDANTS

        asyncio.run(go())
    finally:
        chaos.stop()
        shutil.rmtree(root, ignore_errors=True)
