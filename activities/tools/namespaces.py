"""Shell text that enters a testbed tree: the namespaces, mounts and chroot the prepared environments and the
overlay virt server share. Standard library only: the virt server (overlay_virt.py) runs under the system
Python, next to autopkgtest's own modules, not in debflow's environment."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

# Where the run's package repository (flat Packages + pool/ files) appears inside a testbed.
REPO_INSIDE = "/srv/debflow-repo"
# The device nodes a testbed sees: the host's, bound one by one (a user namespace cannot mknod).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty", "console")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def outer(network: bool) -> list[str]:
    """A new user namespace (root mapped to the caller, the subordinate ids to the rest) and mount
    namespace; without `network` also a new network namespace, whose only device is loopback."""
    return [
        "unshare",
        "--map-auto",
        "--map-root-user",
        "--user",
        "--mount",
        *([] if network else ["--net"]),
        "--",
    ]


def mount_script(
    root: str,
    *,
    overlay: tuple[str, str, str] | None = None,
    binds: Sequence[tuple[str, str, bool]] = (),
    network: bool = True,
) -> str:
    """Mount what a testbed needs at `root`, inside the outer namespaces: the overlay (lower, upper, work)
    first when given, then devices, /sys, and `binds` (outside, inside, read-only)."""
    q = shlex.quote
    lines = ["set -e"]
    if overlay is not None:
        lower, upper, work = overlay
        # userxattr: in a user namespace overlayfs keeps its whiteouts in user.* xattrs (trusted.* fails).
        options = f"lowerdir={q(lower)},upperdir={q(upper)},workdir={q(work)},userxattr"
        lines.append(f"mount -t overlay overlay -o {options} {q(root)}")
    if not network:
        # A new network namespace starts with loopback down; tests may still talk to localhost.
        lines.append("ip link set lo up 2>/dev/null || true")
    lines.append(f"mkdir -p {q(root)}/dev {q(root)}/dev/pts {q(root)}/dev/shm {q(root)}/sys")
    for name in DEVICES:
        lines.append(f"touch {q(root)}/dev/{name}; mount -o bind /dev/{name} {q(root)}/dev/{name}")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
    ):
        lines.append(f"ln -sfT {target} {q(root)}/dev/{name}")
    lines += [
        f"ln -sfT /proc/self/fd/2 {q(root)}/dev/stderr",
        f"mount -o noexec,nosuid,newinstance,gid=5,mode=620,ptmxmode=666 -t devpts none {q(root)}/dev/pts",
        f"ln -sfT /dev/pts/ptmx {q(root)}/dev/ptmx",
        f"mount -t tmpfs tmpfs {q(root)}/dev/shm",
        f"mount -o rbind /sys {q(root)}/sys",
    ]
    for outside, inside, read_only in binds:
        target = q(root + inside)
        lines.append(f"mkdir -p {target}; mount --bind {q(outside)} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    return "\n".join(lines)


def chroot(root: str) -> list[str]:
    """Run a command in `root` with fresh IPC, mount, PID, UTS and cgroup namespaces (the PID namespace
    ends every process the command left behind), a clean environment and its own /proc."""
    return [
        "env",
        "-i",
        f"PATH={PATH}",
        "SHELL=/bin/sh",
        "unshare",
        "--root",
        root,
        "--ipc",
        "--mount",
        "--pid",
        "--uts",
        "--cgroup",
        "--fork",
        "--mount-proc",
        "--",
    ]


def shell_command(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
