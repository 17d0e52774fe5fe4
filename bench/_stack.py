"""A private dev stack for one benchmark: embedded PostgreSQL, Temporal dev server, worker processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from worker.devstack import DevStack, private_settings
from worker.postgres import world_readable_tempdir


@asynccontextmanager
async def private_stack(
    workers: int = 1, max_concurrent_activities: int = 16, test_slots: int | None = None
) -> AsyncIterator[DevStack]:
    """temporal-dev.yaml's server settings on free ports, state in a temporary directory."""
    state = world_readable_tempdir("debflow-bench-")
    os.environ["DEBFLOW_MAX_CONCURRENT_ACTIVITIES"] = str(max_concurrent_activities)
    if test_slots is not None:
        os.environ["DEBFLOW_TEST_SLOTS"] = str(test_slots)
    settings = private_settings(state, max_concurrent_activities=max_concurrent_activities)
    stack = DevStack(settings, workers=workers, say=lambda line: print(line, flush=True))
    await asyncio.to_thread(stack.start)
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
