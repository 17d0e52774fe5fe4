"""Prepared testbeds: one unpacked tree per (environment tarball, suite state, architecture) and worker host,
with apt lists written from the imported suite (no `apt-get update` against a mirror per run) and
autopkgtest's own needs installed; each run clones it copy-on-write (overlay_virt.py).

Packages reach a testbed only through a flat repository bound at REPO_INSIDE: the prepared `Packages`
plus the pool files a run needs, linked from the worker's pool cache (by SHA-256, checked against the
index), so a host downloads each file once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from activities.campaigns.archive_files import NotOnMirror, PoolCache, PoolFile
from activities.tools.executors import Hooks, InfrastructureError, host_lock, run_hooked
from activities.tools.namespaces import REPO_INSIDE, chroot, mount_script, outer, shell_command
from activities.tools.testbed_inputs import SuiteIndex

# autopkgtest publishes the binaries it is given as a local repository made with apt-ftparchive.
NEEDS = ("apt-utils",)
VIRT_SERVER = Path(__file__).with_name("overlay_virt.py")
# Part of every prepared environment's key: a change to how they are made makes new ones.
LAYOUT = 2
# Written into the prepared tree: a testbed is thrown away, so dpkg need not fsync (most of an install's
# time on a loaded disk), and apt needs no translations.
DPKG_CONFIG = "force-unsafe-io\n"
APT_CONFIG = 'Acquire::Languages "none";\n'
SOURCES = f"deb [trusted=yes] file:{REPO_INSIDE} ./\n"
# A line of `apt-get --print-uris`: the URI (quoted, escaped), the file's name and size, maybe a hash.
_URI = re.compile(rf"^'file:{re.escape(REPO_INSIDE)}/(?:\./)?(\S+)' \S+ \d+")
_FILENAME = re.compile(rb"^Filename: (\S+)$", re.MULTILINE)
_SHA256 = re.compile(rb"^SHA256: ([0-9a-f]{64})$", re.MULTILINE)
_SIZE = re.compile(rb"^Size: (\d+)$", re.MULTILINE)
_PACKAGE = re.compile(
    rb"^Package: (\S+)\n(?:.*\n)*?Version: (?:\d+:)?(\S+)\n(?:.*\n)*?Architecture: (\S+)$", re.M
)


@dataclass(frozen=True)
class Prepared:
    """A prepared environment: `tree` (never written once ready) and the suite's `Packages`."""

    root: Path
    mirrors: tuple[str, ...]  # where its pool files come from: the suite's mirror, then the base's

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    @property
    def packages(self) -> Path:
        return self.root / "repo" / "Packages"


class Testbeds:
    """Prepared environments of this worker host, made under a host lock, one directory per key."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, *, root: Path, pool_cache: PoolCache, base_mirror: str, base_suite: str, max_age_days: float = 7
    ) -> None:
        self.root = root
        self.max_age_s = max_age_days * 86400
        self.pool_cache = pool_cache
        self.base_mirror = base_mirror
        self.base_suite = base_suite
        self._indices: dict[Path, dict[str, tuple[PoolFile, bytes]]] = {}
        self._lock = threading.Lock()

    def on_base(self, index: SuiteIndex) -> bool:
        """Whether the suite lives on another mirror than the base release's (a local archive): it is
        then tested on the base release's environment, with both indices."""
        return index.mirror.rstrip("/") != self.base_mirror.rstrip("/")

    def tarball_suite(self, index: SuiteIndex) -> str:
        return self.base_suite if self.on_base(index) else index.suite

    def prepare(
        self, tarball: Path, tarball_id: int, index: SuiteIndex, architecture: str, hooks: Hooks
    ) -> tuple[Prepared, bool]:
        """The prepared environment for this tarball and suite state, made if this host has none (then
        True)."""
        # A suite on another mirror (a local archive) is tested on the base release: its lists join the
        # suite's, so test dependencies outside the suite resolve too.
        with_base = self.on_base(index)
        mirrors = (index.mirror, self.base_mirror) if with_base else (index.mirror,)
        key = hashlib.sha256(
            f"{LAYOUT}\0{tarball_id}\0{index.suite}\0{index.state}\0{architecture}\0{mirrors}".encode()
        ).hexdigest()[:20]
        prepared = Prepared(self.root / key, mirrors)
        if (prepared.root / "ready").exists():
            os.utime(prepared.root / "ready")  # in use: kept by the pruning
            return prepared, False
        self.root.mkdir(parents=True, exist_ok=True)
        with host_lock(self.root / f"{key}.lock", hooks, f"the {index.suite} testbed"):
            if (prepared.root / "ready").exists():
                return prepared, False
            making = Prepared(self.root / f"{key}.making", mirrors)
            remove_tree(making.root)
            try:
                self._make(making, tarball, index, with_base, hooks)
                making.root.rename(prepared.root)
            except BaseException:
                # Kept for whoever looks into it; the next try starts afresh.
                if (making.root / "prepare.log").exists():
                    shutil.copyfile(making.root / "prepare.log", self.root / f"{key}.failed.log")
                raise
            finally:
                remove_tree(making.root)
        self._prune()
        return prepared, True

    def _prune(self) -> None:
        """Remove prepared environments no run has used for max_age_days (a suite state long replaced):
        each is a whole system tree. A run touches its environment's `ready` as it starts."""
        now = time.time()
        for ready in self.root.glob("*/ready"):
            with contextlib.suppress(OSError):
                if now - ready.stat().st_mtime > self.max_age_s:
                    remove_tree(ready.parent)

    def _make(
        self, making: Prepared, tarball: Path, index: SuiteIndex, with_base: bool, hooks: Hooks
    ) -> None:
        tree = making.tree
        tree.mkdir(parents=True)
        log = making.root / "prepare.log"
        unpack = shell_command(["tar", "--exclude=./dev", "-C", str(tree), "-xf", str(tarball)])
        unpack += " && " + shell_command(["useradd", "--create-home", "--root", str(tree), "unshare"])
        self._run(["unshare", "--map-auto", "--map-root-user", "sh", "-ec", unpack], making.root, log, hooks)
        making.packages.parent.mkdir()
        packages = index.packages()
        if with_base:
            # Once per prepared environment: the base release's lists from its mirror (apt checks their
            # signatures with the keyring in the tarball), kept as part of the flat repository.
            self.in_tree(making, "apt-get update -q", network=True, hooks=hooks, log=log)
            lists = sorted((tree / "var/lib/apt/lists").glob("*_Packages"))
            packages += b"\n" + b"\n".join(path.read_bytes().strip() + b"\n" for path in lists)
        making.packages.write_bytes(packages)
        for path in (tree / "var/lib/apt/lists").glob("*_*"):
            path.unlink()
        for path in (tree / "etc/apt/sources.list.d").glob("*"):
            path.unlink()
        (tree / "etc/apt/sources.list").write_text(SOURCES)
        (tree / "etc/dpkg/dpkg.cfg.d/debflow-testbed").write_text(DPKG_CONFIG)
        (tree / "etc/apt/apt.conf.d/90debflow-testbed").write_text(APT_CONFIG)
        self.in_tree(making, "apt-get update -q", network=False, hooks=hooks, log=log)
        self.provide(making, making.packages.parent, install=list(NEEDS), hooks=hooks, log=log)
        self.in_tree(
            making,
            # gencaches: the resolution step reads the whole index; its caches come with the tree.
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {' '.join(NEEDS)} && apt-get clean"
            " && apt-cache gencaches",
            network=False,
            hooks=hooks,
            log=log,
        )
        (making.root / "ready").write_text("")

    def in_tree(
        self,
        prepared: Prepared,
        command: str,
        *,
        network: bool,
        hooks: Hooks,
        log: Path,
        repo: Path | None = None,
        clone: Path | None = None,
        binds: tuple[tuple[str, str, bool], ...] = (),
    ) -> str:
        """Run `command` (sh) in the tree, or in a throw-away overlay clone of it in `clone`; its output."""
        root = str(prepared.tree)
        overlay = None
        if clone is not None:
            for name in ("upper", "work", "merged"):
                (clone / name).mkdir(parents=True)
            overlay, root = (root, str(clone / "upper"), str(clone / "work")), str(clone / "merged")
        repo = repo or prepared.packages.parent
        script = mount_script(
            root, overlay=overlay, binds=((str(repo), REPO_INSIDE, True), *binds), network=network
        )
        script += "\n" + shell_command([*chroot(root), "sh", "-ec", command])
        output = log.with_name(log.name + ".last")
        try:
            self._run([*outer(network), "sh", "-c", script], prepared.root, output, hooks)
            return output.read_text(errors="replace")
        finally:
            with open(log, "a") as whole:
                whole.write(output.read_text(errors="replace") if output.exists() else "")
            output.unlink(missing_ok=True)
            if clone is not None:
                remove_tree(clone)

    def _run(self, argv: list[str], cwd: Path, log: Path, hooks: Hooks) -> None:
        outcome = run_hooked(argv, cwd=cwd, log=log, env={"LC_ALL": "C.UTF-8"}, hooks=hooks)
        if outcome.returncode != 0:
            tail = log.read_text(errors="replace")[-800:]
            raise InfrastructureError(f"preparing a testbed failed (exit {outcome.returncode}): {tail}")

    def provide(
        self,
        prepared: Prepared,
        repo: Path,
        *,
        install: list[str],
        hooks: Hooks,
        log: Path,
        satisfy: str = "",
        debs: Path | None = None,
        clone: Path | None = None,
    ) -> list[PoolFile]:
        """Link into `repo` the pool files apt would fetch to install `install` (names, or .deb paths
        below `debs`) and to satisfy the relation `satisfy`; fetched from the mirror only when the host's
        pool cache lacks them. The files apt names come with the SHA-256 of the verified index."""
        repo.mkdir(parents=True, exist_ok=True)
        paths = self._resolve(prepared, install, satisfy, debs, clone=clone, hooks=hooks, log=log)
        if not paths:
            (repo / "Packages").touch()
            return []
        # apt shows no SHA-256 (or none at all): the file's entry in the repository's index says it.
        pool = self._pool_index(prepared)
        wanted = []
        for path in paths:
            if path not in pool:
                raise InfrastructureError(f"apt wants {path}, which the testbed's index does not list")
            wanted.append(pool[path])
            self.fetch(prepared, pool[path][0], repo)
        if repo != prepared.packages.parent:
            # The run's index lists only what it installs: every apt call in the testbed then works on a
            # universe of a few packages besides the installed ones (seconds less per call on a full suite).
            (repo / "Packages").write_bytes(b"\n".join(stanza for _, stanza in dict.fromkeys(wanted)))
        return [file for file, _ in wanted]

    def _resolve(
        self,
        prepared: Prepared,
        install: list[str],
        satisfy: str,
        debs: Path | None,
        *,
        clone: Path | None,
        hooks: Hooks,
        log: Path,
    ) -> list[str]:
        """The pool paths apt fetches for this: asked of apt in a clone of the tree (the whole suite's
        index, a second or two), or remembered from the last time the same binaries and relations were
        asked of this prepared environment."""
        given = sorted(debs.glob("*.deb")) if debs is not None else []
        key = hashlib.sha256(json.dumps([install, satisfy]).encode())
        for deb in given:
            key.update(hashlib.sha256(deb.read_bytes()).digest())
        remembered = prepared.root / "resolved" / f"{key.hexdigest()[:32]}.json"
        if remembered.exists():
            return list(json.loads(remembered.read_text()))
        q = shell_command
        commands = []
        if install:
            commands.append(f"apt-get install -qq --print-uris --no-install-recommends {q(install)} || true")
        if satisfy:
            commands.append(
                f"apt-get satisfy -qq --print-uris --no-install-recommends {q([satisfy])} || true"
            )
        output = ""
        if commands:
            binds = ((str(debs), "/srv/debflow-debs", True),) if debs else ()
            output = self.in_tree(
                prepared, "\n".join(commands), network=False, hooks=hooks, log=log, clone=clone, binds=binds
            )
        paths = [
            urllib.parse.unquote(found[1])
            for line in output.splitlines()
            if (found := _URI.match(line.strip()))
        ]
        # The suite's file of a binary under test, of the same version: apt may take it from the suite
        # rather than from autopkgtest's own repository of the binaries.
        same = {deb.name.removesuffix(".deb") for deb in given}
        paths += sorted(same & set(self._pool_index(prepared))) if same else []
        if prepared.root.name.endswith(".making"):  # renamed when ready: nothing to remember it by
            return paths
        remembered.parent.mkdir(exist_ok=True)
        partial = remembered.with_name(f"{remembered.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(json.dumps(paths))
        partial.replace(remembered)
        return paths

    def _pool_index(self, prepared: Prepared) -> dict[str, tuple[PoolFile, bytes]]:
        """Filename (and name_version_architecture) -> pool file and index stanza, of the prepared index
        (read once per prepared environment and process)."""
        with self._lock:
            found = self._indices.get(prepared.root)
        if found is not None:
            return found
        found = {}
        for paragraph in prepared.packages.read_bytes().split(b"\n\n"):
            name, sha256, size, package = (p.search(paragraph) for p in (_FILENAME, _SHA256, _SIZE, _PACKAGE))
            if name and sha256 and size:
                path = name[1].decode()
                found[path] = (PoolFile(path, sha256[1].decode(), int(size[1])), paragraph.strip() + b"\n")
                if package:  # also by name_version_architecture, as a .deb is named
                    found[b"_".join(package.groups()).decode()] = found[path]
        with self._lock:
            self._indices[prepared.root] = found
            while len(self._indices) > 8:
                self._indices.pop(next(iter(self._indices)))
        return found

    def fetch(self, prepared: Prepared, file: PoolFile, repo: Path) -> None:
        into = repo / file.path.rsplit("/", 1)[0]
        if (into / file.name).exists():
            return
        into.mkdir(parents=True, exist_ok=True)
        for i, mirror in enumerate(prepared.mirrors):
            try:
                self.pool_cache.fetch(mirror, file, into)
                return
            except NotOnMirror:
                if i == len(prepared.mirrors) - 1:
                    raise


def link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)


def remove_tree(path: Path) -> None:
    """Remove a tree whose files belong to a user namespace's subordinate ids."""
    if path.exists():
        subprocess.run(["unshare", "--map-auto", "--map-root-user", "rm", "-rf", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def virt_server_argv(tree: Path, run_dir: Path, repo: Path, *, network: bool) -> list[str]:
    """The overlay virt server as autopkgtest's `-- VIRT-SERVER ARGS` (it runs under the system Python)."""
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    argv = [python, str(VIRT_SERVER), "--tree", str(tree), "--run-dir", str(run_dir), "--repo", str(repo)]
    return argv + (["--network"] if network else [])
