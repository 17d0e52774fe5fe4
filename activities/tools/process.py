"""Running a tool as its own process group: heartbeats while it runs, killed on cancellation."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ToolMissing(RuntimeError):
    """A required program is not installed; the message names the Debian package."""


class Cancelled(Exception):
    """The task was cancelled and its processes were killed."""


@dataclass(frozen=True)
class ProcessOutcome:
    returncode: int
    duration_s: float
    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int


def require_tool(program: str, package: str) -> None:
    from shutil import which

    if which(program) is None:
        raise ToolMissing(f"{program} is not installed: apt-get install {package}")


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the whole group, then SIGKILL what is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            pid, _status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = -sig
                return
            time.sleep(0.1)
    os.wait4(proc.pid, 0)


def _reap_leftovers(pgid: int) -> None:
    """Kill what the tool left running in its group (daemons started by tests, stuck children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    tick: Callable[[float], None] = lambda elapsed: None,
    cancelled: Callable[[], bool] = lambda: False,
    tick_interval: float = 5.0,
) -> ProcessOutcome:
    """Run `argv` (never through a shell) with stdout+stderr appended to `log`.

    `tick` is called about every `tick_interval` seconds (to heartbeat); when `cancelled()` turns
    true the process group is killed and Cancelled raised. Resource usage is the child's own,
    from wait4, so concurrent tasks in one worker do not mix their figures.
    """
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    next_tick = started + tick_interval
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                _reap_leftovers(proc.pid)
                return ProcessOutcome(
                    returncode=proc.returncode,
                    duration_s=time.monotonic() - started,
                    cpu_user_s=usage.ru_utime,
                    cpu_system_s=usage.ru_stime,
                    max_rss_kb=usage.ru_maxrss,
                )
            if cancelled():
                _kill_group(proc)
                raise Cancelled(f"{argv[0]} was cancelled and its process group killed")
            now = time.monotonic()
            if now >= next_tick:
                tick(now - started)
                next_tick = now + tick_interval
            time.sleep(0.2)
    except BaseException:
        if proc.returncode is None:
            _kill_group(proc)
        raise
