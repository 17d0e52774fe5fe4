"""The SIMULATED executor: invented test outcomes for load tests and benchmarks, never for real uploads.

Outcomes and durations are a pure function of (seed, package, version, architecture, side, attempt),
so a glibc-sized campaign can run end to end on one machine and give the same verdicts every time.
"""

from __future__ import annotations

import hashlib

from models.campaign import RunResult, Side, Simulation

NAME = "simulated"

# Shares of targets per behaviour, in 1/1000: roughly what Debian's CI sees on a large transition.
ALWAYS_FAIL = 40
REGRESSING = 15  # of which about a third pass when re-run (flaky)
IMPROVING = 5
NEUTRAL = 20


def _fraction(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_outcome(
    simulation: Simulation, package: str, version: str, architecture: str, side: Side, attempt: int
) -> tuple[RunResult, dict[str, str], float]:
    """(result, per-test statuses, duration in seconds) of one simulated run."""
    behaviour = _fraction(simulation.seed, package, version, architecture) * 1000
    if behaviour < ALWAYS_FAIL:
        result = RunResult.FAIL
    elif behaviour < ALWAYS_FAIL + REGRESSING:
        flaky = _fraction(simulation.seed, package, "flaky") < 0.35
        fails_now = side is Side.NEW and (attempt == 1 or not flaky)
        result = RunResult.FAIL if fails_now else RunResult.PASS
    elif behaviour < ALWAYS_FAIL + REGRESSING + IMPROVING:
        result = RunResult.FAIL if side is Side.REFERENCE else RunResult.PASS
    elif behaviour < ALWAYS_FAIL + REGRESSING + IMPROVING + NEUTRAL:
        result = RunResult.NEUTRAL
    else:
        result = RunResult.PASS
    tests = {}
    if result is not RunResult.NEUTRAL:
        count = 1 + int(_fraction(simulation.seed, package, "tests") * 3)
        tests = {f"simulated-test-{i}": "PASS" for i in range(count)}
        if result is RunResult.FAIL:
            tests["simulated-test-0"] = "FAIL"
    duration = simulation.duration_scale * (0.5 + 4.5 * _fraction(simulation.seed, package, "duration"))
    return result, tests, duration
