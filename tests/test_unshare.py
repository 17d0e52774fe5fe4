"""The isolated executor end to end: sbuild and autopkgtest in user namespaces from an mmdebstrap tarball.

The mirror is the one this machine's apt uses (read here, never written into the repository). Making the
tarball takes about a minute, so it is cached across test sessions in ~/.cache/debflow-tests (remade
after a week) and imported into each session's artifact store like one the executor made itself.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
from debian.deb822 import Deb822
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.storage.store import ArtifactStore
from activities.tools.environments import CATEGORY, EnvironmentStore, make_tarball
from activities.tools.executors import Hooks
from activities.tools.runs import ToolRuns
from activities.tools.unshare import UnshareExecutor
from activities.uploads.debian_tasks import DebianTasks
from client.api import get_report, store_source_package, submit_upload
from models.payloads import BuildInput, BuildResult, TaskResult
from models.tables import Artifact, TaskHistory
from worker.main import build_worker
from worker.settings import Settings

# Real Debian tools end to end: minutes, not seconds (`pytest -m "not slow"` leaves it out).
pytestmark = pytest.mark.slow

SUITE, ARCH = "bookworm", "amd64"
MAX_AGE_S = 7 * 24 * 3600
HOLD_S = 3.0


def machine_mirror(suite: str = SUITE) -> str:
    """The Debian mirror of this machine's apt configuration (deb822 .sources, then sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in Deb822.iter_paragraphs(path.read_text()):
            if "deb" in stanza.get("Types", "").split() and suite in stanza.get("Suites", "").split():
                return str(stanza["URIs"].split()[0])
    sources_list = Path("/etc/apt/sources.list")
    for line in sources_list.read_text().splitlines() if sources_list.exists() else []:
        words = [w for w in line.split() if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            return words[1]
    pytest.fail(f"this machine's apt configuration names no mirror for {suite}")


def _subordinate_ids_ready() -> bool:
    for name in ("/etc/subuid", "/etc/subgid"):
        lines = Path(name).read_text().split() if Path(name).exists() else []
        if not lines or not lines[0].startswith("root:"):
            return False
    return True


@pytest.fixture(scope="session")
def cached_tarball() -> tuple[Path, str]:
    """A bookworm/amd64 buildd tarball from the machine's mirror, made at most once a week."""
    mirror = machine_mirror()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "debflow-tests"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{SUITE}-{ARCH}-{hashlib.sha256(mirror.encode()).hexdigest()[:12]}.tar.zst"
    # `make test` runs two test processes: one makes the tarball, the other waits for it.
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists() or time.time() - path.stat().st_mtime > MAX_AGE_S:
            making = path.with_name(path.name + ".new.tar.zst")
            make_tarball(SUITE, ARCH, mirror, making, Hooks())
            making.replace(path)
    return path, mirror


async def test_unshare_executor_builds_and_tests_an_example(
    client: Client,
    settings: Settings,
    sessions: sessionmaker[Session],
    example_sources: dict[str, Path],
    tmp_path: Path,
    cached_tarball: tuple[Path, str],
) -> None:
    for tool in ("mmdebstrap", "sbuild", "newuidmap", "autopkgtest"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/ensure-debian-tools as root"
    assert _subordinate_ids_ready(), "root needs subordinate ids first in /etc/subuid and /etc/subgid"
    store = ArtifactStore(settings.store_dir, sessions)
    tarball, mirror = cached_tarball
    settings.executor, settings.mirror = "unshare", mirror
    environments = EnvironmentStore(
        store=store, mirror=mirror, cache_dir=tmp_path, max_age_days=7, expiration_days=30
    )
    environment_id = environments.find(SUITE, ARCH) or environments.import_tarball(tarball, SUITE, ARCH)

    parts = build_worker(client, settings, settings.database_url or "")
    try:
        async with parts:
            handle = await submit_upload(
                client, settings, settings.database_url or "", example_sources["hello-debflow"], again=True
            )
            report = await get_report(client, handle.id, poll_s=0.5)
    finally:
        parts.close()

    tasks = {t.name: t for t in report.tasks}
    assert report.result == TaskResult.SUCCESS, report
    assert tasks["build"].result == TaskResult.SUCCESS and tasks["autopkgtest"].result == TaskResult.SUCCESS
    with sessions() as session:
        made = {
            a.category: a.data
            for a in session.scalars(select(Artifact).where(Artifact.workflow_id == handle.id))
        }
    assert made["debian:package-build-log"]["environment_artifact_id"] == environment_id
    assert made["debian:autopkgtest"]["virt_server"] == "unshare:unshare"
    assert {n: t["status"] for n, t in made["debian:autopkgtest"]["tests"].items()} == {
        "greets": "PASS",
        "version-flag": "PASS",
    }


def test_waiting_for_the_environment_is_recorded_apart_from_the_build(
    settings: Settings,
    sessions: sessionmaker[Session],
    example_sources: dict[str, Path],
    tmp_path: Path,
    cached_tarball: tuple[Path, str],
) -> None:
    """A build that waits while another activity of the host makes its environment: the wait is an
    `environment` task of its own, and the build's recorded duration leaves it out."""
    tarball, mirror = cached_tarball
    store = ArtifactStore(settings.store_dir, sessions)
    environments = EnvironmentStore(
        store=store, mirror=mirror, cache_dir=tmp_path / "environments", max_age_days=7, expiration_days=30
    )
    with sessions.begin() as session:  # no fresh environment: the build must wait for one
        session.execute(update(Artifact).where(Artifact.category == CATEGORY).values(expires_at=func.now()))
    artifact_id, source, version = store_source_package(
        settings, settings.database_url or "", example_sources["hello-debflow"]
    )
    tasks = DebianTasks(
        ToolRuns(
            sessions=sessions,
            store=store,
            executor=UnshareExecutor(environments),
            scratch_dir=tmp_path / "scratch",
            heartbeat_interval=1,
            expiration_days=1,
        )
    )
    params = BuildInput(
        upload_artifact_id=artifact_id,
        source=source,
        version=version,
        suite=SUITE,
        architecture=ARCH,
        build_arch_all=True,
    )
    workflow_id = f"environment-wait-{uuid.uuid4().hex[:8]}"
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id, activity_id="1", attempt=1)
    waiting = threading.Event()
    env.on_heartbeat = lambda *details: waiting.set()  # nothing heartbeats before the environment lock
    results: list[BuildResult] = []

    # "Another activity" holds the environment lock and makes (here: imports) the environment; only once
    # the build is seen waiting does it hold on for HOLD_S more, so the build waits at least that long.
    with environments._lock(SUITE, ARCH, Hooks()):
        build = threading.Thread(target=lambda: results.append(env.run(tasks.build_package, params)))
        started = time.monotonic()
        build.start()
        assert waiting.wait(timeout=300), "the build never waited for the environment"
        time.sleep(HOLD_S)
        environment_id = environments.import_tarball(tarball, SUITE, ARCH)
    build.join(timeout=1800)
    elapsed = time.monotonic() - started

    (result,) = results
    assert result.result == TaskResult.SUCCESS and result.environment_artifact_id == environment_id
    with sessions() as session:
        rows = {
            h.task_name: h
            for h in session.scalars(select(TaskHistory).where(TaskHistory.workflow_id == workflow_id))
        }
        log = session.get(Artifact, result.log_artifact_id)
    assert set(rows) == {"build", "environment"}
    waited = rows["environment"]
    assert (waited.subject, waited.context) == ("system-tarball", f"{SUITE}/{ARCH}")
    assert waited.data["artifact_id"] == environment_id and waited.data["made"] is False
    assert waited.duration_s >= HOLD_S
    # Both happened inside `elapsed`, one after the other: had the build's duration included the wait,
    # their sum would exceed it by the wait (at least HOLD_S).
    assert rows["build"].duration_s + waited.duration_s <= elapsed
    assert log is not None and log.data["duration_s"] == pytest.approx(rows["build"].duration_s, abs=0.01)
    assert log.data["environment_s"] == pytest.approx(waited.duration_s, abs=0.01)
