#!/usr/bin/python3
"""autopkgtest virt server: a copy-on-write clone (overlay mount) of a prepared tree per testbed.

autopkgtest-virt-unshare unpacks a tarball for every open and every revert. This one mounts an overlay
(lower: the prepared tree, never written; upper and work: a fresh directory of the run) inside a user and
mount namespace held by one process; every command autopkgtest runs enters those namespaces, then new
IPC, mount, PID, UTS and cgroup namespaces chrooted to the clone. Revert ends the holder and throws the
upper directory away: milliseconds, not a tarball. Without --network the holder also has a new network
namespace with only loopback, which every command shares.

Runs under the system Python (autopkgtest's VirtSubproc lives in /usr/share/autopkgtest/lib).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, "/usr/share/autopkgtest/lib")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from activities.tools.namespaces import (
    REPO_INSIDE,
    chroot,
    mount_script,
    outer,
)

capabilities = ["revert", "revert-full-system", "root-on-testbed", "suggested-normal-user=unshare"]
options: argparse.Namespace
holder: subprocess.Popen[bytes] | None = None
generation = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tree", required=True, help="the prepared tree (lower directory, read only)")
    parser.add_argument("--run-dir", required=True, help="an empty directory for the clones")
    parser.add_argument("--repo", help="the run's package repository, bound read-only at " + REPO_INSIDE)
    parser.add_argument("--network", action="store_true", help="share the host's network namespace")
    parser.add_argument("-d", "--debug", action="store_true")
    return parser.parse_args()


def hook_open() -> None:
    import VirtSubproc

    global holder, generation
    generation += 1
    clone = Path(options.run_dir) / f"clone-{generation}"
    upper, work, merged = clone / "upper", clone / "work", clone / "merged"
    for path in (upper, work, merged):
        path.mkdir(parents=True)
    binds = [(options.repo, REPO_INSIDE, True)] if options.repo else []
    script = mount_script(
        str(merged),
        overlay=(options.tree, str(upper), str(work)),
        binds=binds,
        network=options.network,
    )
    # The holder keeps the namespaces (and so the mounts) alive until revert or cleanup.
    holder = subprocess.Popen(
        [*outer(options.network), "sh", "-c", script + "\necho ready\nexec sleep infinity"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != b"ready":
        holder.wait()
        VirtSubproc.bomb(f"could not mount the testbed clone at {merged} (exit {holder.returncode})")
    enter = ["nsenter", f"--target={holder.pid}", "--user", "--mount"]
    if not options.network:
        enter.append("--net")
    VirtSubproc.auxverb = [*enter, "--", *chroot(str(merged))]


def _stop_holder() -> None:
    global holder
    if holder is not None:
        holder.kill()
        holder.wait()
        holder = None


def _remove(path: Path) -> None:
    # The clone's files belong to the user namespace's ids: remove them from inside one.
    if path.exists():
        subprocess.run(["unshare", "--map-auto", "--map-root-user", "rm", "-rf", str(path)], check=False)


def hook_downtmp(path: str | None) -> str:
    import VirtSubproc

    tmp: str = VirtSubproc.downtmp_mktemp(path)
    return tmp


def hook_revert() -> None:
    _stop_holder()
    _remove(Path(options.run_dir) / f"clone-{generation}")
    hook_open()


def hook_cleanup() -> None:
    _stop_holder()
    _remove(Path(options.run_dir) / f"clone-{generation}")


def hook_capabilities() -> list[str]:
    return capabilities


def main() -> None:
    global options
    import adtlog
    import VirtSubproc

    options = parse_args()
    if options.debug:
        adtlog.verbosity = 2
    os.makedirs(options.run_dir, exist_ok=True)
    VirtSubproc.main()


if __name__ == "__main__":
    main()
