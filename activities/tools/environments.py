"""Build and test environments: mmdebstrap tarballs per suite and architecture, kept as artifacts."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.debian.dsc import BadUpload
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore, NewArtifact
from activities.tools.executors import EnvironmentUse, Hooks, InfrastructureError, host_lock, run_hooked
from activities.tools.process import require_tool
from models.artifacts import SystemTarballData
from models.tables import Artifact
from models.vocabulary import ArtifactCategory, TaskName, TaskResult

CATEGORY = ArtifactCategory.SYSTEM_TARBALL
VARIANT = "buildd"
COMPONENTS = ["main"]
# apt inside the environment fetches build and test dependencies over https mirrors too.
INCLUDES = ["ca-certificates"]
# Suite and architecture names reach mmdebstrap, sbuild and autopkgtest as arguments: nothing that
# could read as an option or a path.
NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
# The task-history key of making or waiting for an environment: (TASK, SUBJECT, "suite/architecture").
TASK, SUBJECT = TaskName.ENVIRONMENT, "system-tarball"


@dataclass(frozen=True)
class Environment:
    """A tarball ready to use in an activity's work directory, named .tar.zst."""

    artifact_id: int
    path: Path
    use: EnvironmentUse


class EnvironmentStore:
    """Finds the newest tarball for (suite, architecture, mirror) younger than `max_age_days`, or makes one.

    Creation is serialised per host with a file lock, so concurrent activities of one worker host wait
    for one mmdebstrap instead of running several; two hosts may both make one, and the newer is used.
    """

    def __init__(
        self,
        *,
        store: ArtifactStore,
        mirror: str,
        cache_dir: Path,
        max_age_days: float,
        expiration_days: int,
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.cache_dir = cache_dir
        self.max_age = dt.timedelta(days=max_age_days)
        self.expiration = dt.timedelta(days=max(expiration_days, 2 * max_age_days))

    def _wanted(self, suite: str, architecture: str) -> dict[str, object]:
        return {"suite": suite, "architecture": architecture, "variant": VARIANT, "mirror": self.mirror}

    def find(self, suite: str, architecture: str) -> int | None:
        """The newest fresh tarball artifact, by the category's (category, created_at) index."""
        now = dt.datetime.now(dt.UTC)
        with self.store.sessions() as session:
            found: int | None = session.scalar(
                select(Artifact.id)
                .where(
                    Artifact.category == CATEGORY,
                    Artifact.created_at > now - self.max_age,
                    Artifact.data.contains(self._wanted(suite, architecture)),
                    (Artifact.expires_at.is_(None)) | (Artifact.expires_at > now + dt.timedelta(days=1)),
                )
                .order_by(Artifact.created_at.desc())
                .limit(1)
            )
        return found

    def get(self, suite: str, architecture: str, workdir: Path, hooks: Hooks) -> Environment:
        """A usable tarball for `suite`/`architecture`, linked into `workdir`."""
        for name in (suite, architecture):
            if not NAME.match(name):
                raise BadUpload(f"invalid suite or architecture name {name!r}")
        clock = time.monotonic()
        artifact_id = self.find(suite, architecture)
        ready, made = artifact_id is not None, False
        if artifact_id is None:
            with self._lock(suite, architecture, hooks):
                artifact_id = self.find(suite, architecture)
                if artifact_id is None:
                    artifact_id, made = self._create(suite, architecture, hooks), True
        files = self.store.files_of([artifact_id])[artifact_id]
        if len(files) != 1:
            raise InfrastructureError(f"environment artifact {artifact_id} has {len(files)} files, not one")
        (blob,) = files.values()
        # sbuild and autopkgtest pick tar's decompressor by the file's own name, which a symbolic link
        # does not change: a hard link (a copy across file systems) named .tar.zst.
        local = workdir / f"{suite}-{architecture}.tar.zst"
        try:
            os.link(blob, local)
        except OSError:
            shutil.copyfile(blob, local)
        use = EnvironmentUse(artifact_id, time.monotonic() - clock, ready=ready, made=made)
        return Environment(artifact_id, local, use)

    @contextlib.contextmanager
    def _lock(self, suite: str, architecture: str, hooks: Hooks) -> Iterator[None]:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{suite}/{architecture}/{self.mirror}".encode()).hexdigest()[:16]
        # Another activity of this host may be making the same tarball: wait for it, heartbeating.
        with host_lock(self.cache_dir / f"{key}.lock", hooks, f"the {suite}/{architecture} environment"):
            yield

    def _create(self, suite: str, architecture: str, hooks: Hooks) -> int:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        output = self.cache_dir / f"{suite}-{architecture}-{stamp}.tar.zst"
        try:
            make_tarball(suite, architecture, self.mirror, output, hooks)
            return self.import_tarball(output, suite, architecture)
        finally:
            output.unlink(missing_ok=True)

    def import_tarball(self, path: Path, suite: str, architecture: str) -> int:
        """Store a tarball made by `make_tarball` as the environment of `suite`/`architecture`."""
        data = SystemTarballData(
            suite=suite,
            architecture=architecture,
            variant=VARIANT,
            mirror=self.mirror,
            components=COMPONENTS,
            includes=INCLUDES,
            filename=path.name,
            tool=_mmdebstrap_version(),
        )
        (artifact_id,) = self.store.register(
            [NewArtifact(CATEGORY, data, {path.name: path})],
            expires_at=dt.datetime.now(dt.UTC) + self.expiration,
        )
        return artifact_id


def record_environment(
    session: Session,
    use: EnvironmentUse,
    *,
    history: TaskHistoryWriter,
    context: str,
    workflow_id: str | None,
    wanted_by: str,
) -> None:
    """A task-history row for making or waiting for an environment, apart from the build or test it
    precedes. A fresh one found at once gets none: such rows would hide the making in the timeouts
    derived from this history (activities/uploads/timeouts.py)."""
    if use.ready:
        return
    history.add(
        session,
        task_name=TASK,
        subject=SUBJECT,
        context=context,
        workflow_id=workflow_id,
        started_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=use.seconds),
        duration_s=use.seconds,
        result=TaskResult.SUCCESS,
        usage=[],
        data={"artifact_id": use.artifact_id, "made": use.made, "for": wanted_by},
    )


def make_tarball(suite: str, architecture: str, mirror: str, output: Path, hooks: Hooks) -> None:
    """Run mmdebstrap (as root it needs subordinate ids: docs/pipeline.md "Executors")."""
    require_tool("mmdebstrap", "mmdebstrap")
    log = output.with_name(output.name + ".log")
    try:
        outcome = run_hooked(
            [
                "mmdebstrap",
                f"--variant={VARIANT}",
                "--mode=unshare",
                f"--architectures={architecture}",
                f"--components={','.join(COMPONENTS)}",
                f"--include={','.join(INCLUDES)}",
                suite,
                str(output),
                mirror,
            ],
            cwd=output.parent,
            log=log,
            env={"LC_ALL": "C.UTF-8"},
            hooks=hooks,
        )
        if outcome.returncode != 0 or not output.exists():
            tail = log.read_text(errors="replace")[-800:]
            raise InfrastructureError(
                f"mmdebstrap could not make the {suite} {architecture} environment from {mirror} "
                f"(exit {outcome.returncode}): {tail}"
            )
    finally:
        log.unlink(missing_ok=True)


def _mmdebstrap_version() -> str:
    result = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "mmdebstrap"
