"""piuparts in a user namespace on an unpacked environment tarball: never on the worker's own system.

The namespace maps its root to the worker user's first subordinate id range (/etc/subuid, as sbuild's
and autopkgtest's unshare modes do), so the testbed's root is an unprivileged user on the host. The
testbed lives below the system's temporary directory, which that user can reach; the suite's version
of the packages is offered to apt there as a local repository, for piuparts' upgrade test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from activities.tools.executors import Hooks, InfrastructureError, run_hooked
from activities.tools.process import ProcessOutcome, require_tool
from models.artifacts import PiupartsData
from models.vocabulary import TaskResult

WRAPPER = Path(__file__).with_name("piuparts_userns.py")
# The script's own failures (unpacking the testbed): infrastructure, never a verdict on the package.
SETUP_FAILED = 90
# piuparts' chroot is ready once apt inside it has read the archive; failing before says nothing about
# the package (a mirror down, a broken tarball).
READY = "'apt-get', 'update']"

SCRIPT = r"""
set -e
cd "$1"; shift
mkdir base
tar -x --zstd -f base.tar.zst -C base --exclude='./dev/*' || exit 90
rm base.tar.zst
if [ -d repo ]; then
  echo "deb [trusted=yes] file://$PWD/repo ./" > base/etc/apt/sources.list.d/debflow-suite.list
  set -- --bindmount "$PWD/repo" "$@"
fi
exec /usr/bin/python3 "$PWD/piuparts_userns.py" --existing-chroot "$PWD/base" --hard-link \
  --keep-sources-list -l "$PWD/piuparts.log" "$@"
"""


class PiupartsUnavailable(InfrastructureError):
    """This host cannot run piuparts isolated (no subordinate ids, no unshare): an infrastructure fault."""


@dataclass(frozen=True)
class PiupartsRun:
    outcome: ProcessOutcome
    log: Path
    ready: bool  # the testbed came up: a non-zero exit is then piuparts' verdict
    summary: str

    @property
    def result(self) -> TaskResult:
        return TaskResult.SUCCESS if self.outcome.returncode == 0 else TaskResult.FAILURE


def subordinate_root(user: str | None = None) -> int:
    """The first subordinate uid and gid of this user: the host ids of the namespace's root."""
    import pwd

    name = user or pwd.getpwuid(os.getuid()).pw_name
    found = []
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            ranges = [line.strip().split(":") for line in f if line.startswith(f"{name}:")]
        if not ranges:
            raise PiupartsUnavailable(f"{path} gives {name} no subordinate ids: piuparts cannot run isolated")
        found.append(int(ranges[0][1]))
    if found[0] != found[1]:
        raise PiupartsUnavailable("the first subordinate uid and gid ranges differ: not supported")
    return found[0]


def ready_for_verdict(returncode: int, log: str) -> bool:
    """Whether the testbed came up, so that piuparts' exit code is its verdict on the package."""
    if returncode == SETUP_FAILED:
        return False
    return any("Command ok:" in line and line.endswith(READY) for line in log.split("\n"))


def summarize(log: str) -> str:
    """piuparts' first FAIL: line, else its last PASS: line ("0m7.3s INFO: PASS: All tests." → "PASS: All
    tests.")."""
    verdicts = []
    for line in log.split("\n"):
        parts = line.split(" ", 2)  # elapsed time, level, message
        if len(parts) == 3 and parts[2].startswith(("FAIL:", "PASS:")):
            verdicts.append(parts[2])
    failed = [v for v in verdicts if v.startswith("FAIL:")]
    chosen = failed[0] if failed else (verdicts[-1] if verdicts else "piuparts wrote no verdict")
    return chosen[:300]


def run_piuparts(
    tarball: Path, debs: list[Path], suite_debs: list[Path], *, workdir: Path, hooks: Hooks
) -> PiupartsRun:
    """piuparts on `debs` in a testbed unpacked from `tarball`; with `suite_debs` (the suite's version)
    also the upgrade from them."""
    require_tool("piuparts", "piuparts")
    require_tool("unshare", "util-linux")
    require_tool("newuidmap", "uidmap")
    host_root = subordinate_root()
    testbed = Path(tempfile.mkdtemp(prefix="debflow-piuparts-", dir=tempfile.gettempdir()))
    try:
        _stage(testbed, tarball, debs, suite_debs)
        for path in [testbed, *testbed.rglob("*")]:
            os.chown(path, host_root, host_root, follow_symlinks=False)
        log = workdir / "piuparts.log"
        outcome = run_hooked(
            [
                "unshare",
                "--map-auto",
                "--setuid",
                "0",
                "--setgid",
                "0",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
                SCRIPT,
                "piuparts-in-namespace",
                str(testbed),
                *(str(testbed / "debs" / d.name) for d in debs),
            ],
            cwd=workdir,
            log=workdir / "unshare.log",
            env={"LC_ALL": "C.UTF-8", "TMPDIR": str(testbed)},
            hooks=hooks,
        )
        written = testbed / "piuparts.log"
        if written.exists():
            shutil.copyfile(written, log)
        else:
            log.write_text("")
        with open(log, "a") as out:
            out.write("\n=== unshare and testbed setup\n")
            out.write((workdir / "unshare.log").read_text(errors="replace")[-20000:])
        text = log.read_text(errors="replace")
        return PiupartsRun(outcome, log, ready_for_verdict(outcome.returncode, text), summarize(text))
    finally:
        _wait_for_namespace(testbed)
        # The testbed's files belong to the namespace's ids: root on the host removes them.
        subprocess.run(["rm", "-rf", "--one-file-system", str(testbed)], check=False)


def _wait_for_namespace(testbed: Path, timeout_s: float = 60) -> None:
    """Wait until the namespace's first process (its command line names the testbed) is gone: the kernel
    ends every other process of a PID namespace before its first one finishes exiting. A cancelled run
    kills unshare, and unshare's --kill-child that process, but not synchronously."""
    marker = str(testbed).encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    alive = alive or marker in (entry / "cmdline").read_bytes()
        if not alive:
            return
        time.sleep(0.2)


def _stage(testbed: Path, tarball: Path, debs: list[Path], suite_debs: list[Path]) -> None:
    testbed.chmod(0o755)
    # Copies, not links: the store's files are readable by root only.
    shutil.copyfile(tarball, testbed / "base.tar.zst")
    shutil.copyfile(WRAPPER, testbed / WRAPPER.name)
    (testbed / "debs").mkdir()
    for deb in debs:
        shutil.copyfile(deb, testbed / "debs" / deb.name)
    if suite_debs:
        repo = testbed / "repo"
        repo.mkdir()
        for deb in suite_debs:
            shutil.copyfile(deb, repo / deb.name)
        index = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."], cwd=repo, capture_output=True, text=True, check=True
        )
        (repo / "Packages").write_text(index.stdout)
    for path in testbed.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def summarize_data(data: PiupartsData) -> str:
    upgrade = f"upgrade from {data.upgrade_from}" if data.upgrade_from else "no upgrade: not in the suite"
    return f"{data.summary} ({upgrade})"
