"""Fault injection for chaos tests: fail an activity after it stored its artifacts, before it completes.

Off unless the injector has a rate above 0 (the worker sets it from DEBFLOW_FAULT_AFTER_STORE_RATE).
Only a first attempt is failed, so every task still finishes; the retry must find and reuse what the
failed attempt stored. Every injection is logged as "fault injection". With a journal file, each call
of `after_store` (injected or not) appends one line, so a benchmark can count runs that stored twice.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

from temporalio import activity

log = logging.getLogger("debflow.faults")


class InjectedFault(RuntimeError):
    """A failure injected on purpose (retryable, like a worker crash at that point)."""


class FaultInjector:
    """Fails first attempts after they stored their outputs, at `rate`, for the named activities.

    Built once by the composition root (worker/main.py) from the settings and given to the activities;
    the default injects nothing and journals nothing.
    """

    def __init__(self, *, rate: float = 0.0, activities: str = "", journal: Path | None = None) -> None:
        """`activities` is a comma-separated list of activity names (empty: every hooked activity)."""
        if not 0 <= rate <= 1:
            raise ValueError("the fault injection rate is a probability between 0 and 1")
        self.rate = rate
        self.activities = frozenset(a.strip() for a in activities.split(",") if a.strip())
        self.journal = journal
        if rate > 0:
            log.warning(
                "fault injection ON: %.0f%% of first attempts of %s fail after storing their artifacts",
                rate * 100,
                ", ".join(sorted(self.activities)) or "every hooked activity",
            )

    def after_store(self, activity_type: str) -> None:
        """Called by an activity right after its outputs are registered; may raise `InjectedFault`."""
        if self.rate <= 0 and self.journal is None:
            return
        info = activity.info()
        if self.journal is not None:
            line = f"{activity_type}\t{info.workflow_id}\t{info.activity_id}\t{info.attempt}\n"
            # One O_APPEND write per line: lines of concurrent workers do not interleave.
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        if self.activities and activity_type not in self.activities:
            return
        if info.attempt == 1 and self.rate > 0 and random.random() < self.rate:
            message = (
                f"fault injection: {activity_type} of {info.workflow_id} (activity {info.activity_id}) "
                "fails after storing its artifacts"
            )
            log.warning(message)
            raise InjectedFault(message)


NO_FAULTS = FaultInjector()
