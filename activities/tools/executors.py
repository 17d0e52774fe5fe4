"""Executors run the Debian tools: `host` directly on this machine (unsafe for untrusted packages), `unshare`
(activities/tools/unshare.py) in throw-away user namespaces."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from debian.deb822 import Changes

from activities.debian.dsc import check_tree
from activities.tools.process import Cancelled, ProcessOutcome, require_tool, run_tool


class UnsupportedArchitecture(RuntimeError):
    """The executor cannot build or test for the requested architecture."""


class InfrastructureError(RuntimeError):
    """The executor failed for reasons that are not the package's (mirror, testbed): retry it."""


@dataclass
class Hooks:
    """How a long task reports progress and learns it was cancelled."""

    tick: Callable[[float], None] = lambda elapsed: None
    cancelled: Callable[[], bool] = lambda: False
    interval: float = 5.0


@dataclass(frozen=True)
class EnvironmentUse:
    """The environment (debian:system-tarball) a task ran in, and the time it took to have it.

    Making an environment, or waiting while another activity of the host makes it, is not part of the
    build or test that follows: its seconds are recorded apart (an `environment` task-history row), so
    they inflate neither the task's history nor the timeouts derived from it."""

    artifact_id: int
    seconds: float
    ready: bool  # a fresh one was there at once: nothing made or waited for
    made: bool  # this activity ran mmdebstrap


@dataclass(frozen=True)
class BuildOutput:
    outcome: ProcessOutcome
    changes: Path | None
    debs: list[Path] = field(default_factory=list)
    environment: EnvironmentUse | None = None

    @property
    def environment_artifact_id(self) -> int | None:
        """The debian:system-tarball it ran in, if any."""
        return self.environment.artifact_id if self.environment else None


@dataclass(frozen=True)
class TestOutput:
    outcome: ProcessOutcome
    environment: EnvironmentUse | None = None


class Executor(Protocol):
    """What the activities need from a place that runs the tools."""

    name: str
    virt_server: str  # autopkgtest's virtualisation server, as recorded in results

    def build(
        self,
        dsc: Path,
        workdir: Path,
        *,
        suite: str,
        architecture: str,
        build_arch_all: bool,
        log: Path,
        hooks: Hooks,
        extra_debs: Sequence[Path] = (),
    ) -> BuildOutput: ...

    def autopkgtest(
        self,
        dsc: Path,
        debs: list[Path],
        *,
        suite: str,
        architecture: str,
        workdir: Path,
        output_dir: Path,
        summary: Path,
        log: Path,
        hooks: Hooks,
    ) -> TestOutput: ...


@contextlib.contextmanager
def host_lock(path: Path, hooks: Hooks, waiting_for: str) -> Iterator[None]:
    """An exclusive lock shared by the activities of this host; waiting heartbeats and stops on cancel."""
    with open(path, "w") as lock:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if hooks.cancelled():
                    raise Cancelled(f"cancelled while waiting for {waiting_for}") from None
                hooks.tick(time.monotonic() - started)
                time.sleep(1)
        yield  # closing the file releases the lock


def run_hooked(
    argv: list[str], *, cwd: Path, log: Path, hooks: Hooks, env: dict[str, str] | None = None
) -> ProcessOutcome:
    """run_tool, heartbeating and cancelled through `hooks`."""
    return run_tool(
        argv,
        cwd=cwd,
        log=log,
        env=env,
        tick=hooks.tick,
        cancelled=hooks.cancelled,
        tick_interval=hooks.interval,
    )


def host_architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()


class HostExecutor:
    """Runs dpkg-buildpackage, lintian and autopkgtest (null testbed) on this host, as this user.

    For development and trusted packages only: the package's build and tests run with the
    worker's privileges, and autopkgtest installs the built packages onto the host.
    """

    name = "host"
    virt_server = "null"
    # dpkg allows one installer per host: autopkgtest runs with the null testbed take turns.
    DPKG_LOCK = Path(tempfile.gettempdir()) / "debflow-host-dpkg.lock"

    def __init__(self) -> None:
        self.architecture = host_architecture()

    def build(
        self,
        dsc: Path,
        workdir: Path,
        *,
        suite: str,
        architecture: str,
        build_arch_all: bool,
        log: Path,
        hooks: Hooks,
        extra_debs: Sequence[Path] = (),
    ) -> BuildOutput:
        """`extra_debs` (a rebuild campaign's build-dependencies under test) are installed on the host
        for the build, under the host's dpkg lock, and removed after it."""
        if not extra_debs:
            return self._build(
                dsc, workdir, architecture=architecture, build_arch_all=build_arch_all, log=log, hooks=hooks
            )
        names = [_deb_package(deb) for deb in extra_debs]
        with host_lock(self.DPKG_LOCK, hooks, "the host's dpkg lock"):
            preinstalled = installed_packages(names)
            try:
                installed = run_hooked(
                    ["dpkg", "-i", *map(str, extra_debs)], cwd=workdir, log=log, hooks=hooks
                )
                if installed.returncode != 0:
                    raise InfrastructureError(f"dpkg -i {' '.join(names)} failed: {log.read_text()[-600:]}")
                return self._build(
                    dsc,
                    workdir,
                    architecture=architecture,
                    build_arch_all=build_arch_all,
                    log=log,
                    hooks=hooks,
                )
            finally:
                leftover = sorted(set(installed_packages(names)) - set(preinstalled))
                if leftover:
                    subprocess.run(["dpkg", "--purge", *leftover], capture_output=True, check=False)

    def _build(
        self, dsc: Path, workdir: Path, *, architecture: str, build_arch_all: bool, log: Path, hooks: Hooks
    ) -> BuildOutput:
        require_tool("dpkg-source", "dpkg-dev")
        require_tool("dpkg-buildpackage", "dpkg-dev")
        require_tool("dh", "debhelper")
        if architecture != self.architecture:
            raise UnsupportedArchitecture(
                f"the host executor builds for {self.architecture} only, not {architecture}"
            )
        tree = workdir / "src"
        outcome = run_hooked(
            ["dpkg-source", "--no-check", "-x", str(dsc), str(tree)],
            cwd=workdir,
            log=log,
            hooks=hooks,
        )
        if outcome.returncode != 0:
            return BuildOutput(outcome, None)
        check_tree(tree)
        outcome = run_hooked(
            ["dpkg-buildpackage", "-us", "-uc", "-b" if build_arch_all else "-B"],
            cwd=tree,
            log=log,
            env={"DEB_BUILD_OPTIONS": "parallel=2", "LC_ALL": "C.UTF-8"},
            hooks=hooks,
        )
        changes = sorted(workdir.glob("*.changes"))
        if outcome.returncode != 0 or not changes:
            return BuildOutput(outcome, None)
        with open(changes[0]) as f:
            listed = [entry["name"] for entry in Changes(f).get("Files", [])]
        debs = [workdir / name for name in listed if name.endswith(".deb")]
        return BuildOutput(outcome, changes[0], debs)

    def autopkgtest(
        self,
        dsc: Path,
        debs: list[Path],
        *,
        suite: str,
        architecture: str,
        workdir: Path,
        output_dir: Path,
        summary: Path,
        log: Path,
        hooks: Hooks,
    ) -> TestOutput:
        require_tool("autopkgtest", "autopkgtest")
        names = [_deb_package(deb) for deb in debs]
        with host_lock(self.DPKG_LOCK, hooks, "the host's dpkg lock"):
            preinstalled = installed_packages(names)
            try:
                outcome = run_hooked(
                    [
                        "autopkgtest",
                        "--summary-file",
                        str(summary),
                        "--output-dir",
                        str(output_dir),
                        *map(str, debs),
                        str(dsc),
                        "--",
                        "null",
                    ],
                    cwd=workdir,
                    log=log,
                    env={"LC_ALL": "C.UTF-8"},
                    hooks=hooks,
                )
                return TestOutput(outcome)
            finally:
                # The null testbed leaves the tested packages installed on the host: remove them.
                leftover = sorted(set(installed_packages(names)) - set(preinstalled))
                if leftover:
                    subprocess.run(["dpkg", "--purge", *leftover], capture_output=True, check=False)


def run_lintian(inputs: list[Path], *, workdir: Path, log: Path, hooks: Hooks) -> ProcessOutcome:
    """lintian on the host: it reads the packages and never runs their code, so both executors use it."""
    require_tool("lintian", "lintian")
    return run_hooked(
        [
            "lintian",
            "--display-info",
            "--tag-display-limit",
            "0",
            "--output-width",
            "400",
            "--fail-on",
            "error",
            "--",
            *map(str, inputs),
        ],
        cwd=workdir,
        log=log,
        # lintian leaves a temporary directory (mldbm-elf-*) behind on every run: in the workspace, it goes
        # with it.
        env={"LC_ALL": "C.UTF-8", "TMPDIR": str(workdir)},
        hooks=hooks,
    )


def lintian_version() -> str:
    return subprocess.run(
        ["lintian", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()


def _deb_package(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Package"], capture_output=True, text=True, check=True
    ).stdout.strip()


def installed_packages(names: list[str]) -> list[str]:
    """Which of `names` dpkg has installed right now."""
    if not names:
        return []
    query = subprocess.run(
        ["dpkg-query", "--show", "--showformat", "${Package} ${db:Status-Status}\\n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.split()[0] for line in query.stdout.splitlines() if line.endswith(" installed")]
