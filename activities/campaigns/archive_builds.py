"""Rebuild campaigns with a real executor: the target's source from the suite's mirror (checked against the
imported index), built with the worker's executor (sbuild for `unshare`) with the packages under test
available — the upload's binaries on the *new* side, the suite's binaries of the trigger on the
*reference* side — and its build log stored for the report.

Giving the trigger's binaries on both sides (sbuild: `--extra-package`, a local repository it adds) pins
both builds to what the campaign planned against, as the archive tests do; everything else comes from
the environment's apt sources.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from temporalio import activity

from activities.campaigns.archive_files import NotOnMirror
from activities.campaigns.archive_tests import ArchiveTests
from activities.debian.dsc import ARCHIVE
from activities.debian.source_archives import check_archives
from activities.errors import translate_errors
from activities.storage.history import WORKER_IDENTITY
from activities.storage.store import NewArtifact, StoredArtifact
from models.artifacts import PackageBuildLogData
from models.campaign import RunInput, RunOutcome, RunResult, Side
from models.vocabulary import ActivityName, ArtifactCategory, TaskResult


class ArchiveBuilds(ArchiveTests):
    """The build activity of rebuild campaigns; shares the suite look-ups and pool cache of the tests."""

    @activity.defn(name=ActivityName.RUN_ARCHIVE_BUILD)
    def run_archive_build(self, params: RunInput) -> RunOutcome:
        """One build of a rebuild target from the suite's archive, new or reference side."""
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(lambda stored, _tries: build_outcome_from(stored))
            if reused is not None:
                return reused
            with self.runs.workspace() as work:
                try:
                    return self._build(params, work, started, clock)
                except NotOnMirror as e:
                    raise self._not_on_mirror(e) from e

    def _build(self, params: RunInput, work: Path, started: dt.datetime, clock: float) -> RunOutcome:
        mirror, files = self._suite_files(params)
        fetched = work / "archive"
        fetched.mkdir()
        source = [self.pool_cache.fetch(mirror, f, fetched) for f in files.source]
        check_archives(
            [path for path in source if ARCHIVE.search(path.name)],
            max_unpacked_bytes=self.runs.max_unpacked_bytes,
            max_members=self.runs.max_archive_members,
        )
        if params.side is Side.NEW:
            debs = self._upload_binaries(params, work / "upload")
        else:
            debs = [self.pool_cache.fetch(mirror, f, fetched) for f in files.trigger]
        target = params.target
        version = target.version.split(":", 1)[-1]
        log = work / f"{target.source}_{version}_{params.architecture}_{params.side}.build"
        build_dir = work / "build"
        build_dir.mkdir()
        out = self.runs.executor.build(
            source[0],
            build_dir,
            suite=params.suite,
            architecture=params.architecture,
            # Build-Depends-Indep counts too: build what the architecture's buildd and its arch:all do.
            build_arch_all=True,
            log=log,
            hooks=self.runs.hooks(f"build {params.side}"),
            extra_debs=debs,
        )
        environment_s = self.runs.environment_seconds(
            out.environment, subject=target.source, suite=params.suite, architecture=params.architecture
        )
        duration = time.monotonic() - clock - environment_s
        built = out.outcome.returncode == 0 and out.changes is not None
        data = PackageBuildLogData(
            source=target.source,
            version=target.version,
            architecture=params.architecture,
            filename=log.name,
            exit_code=out.outcome.returncode,
            result=str(TaskResult.SUCCESS if built else TaskResult.FAILURE),
            duration_s=round(duration, 3),
            environment_artifact_id=out.environment_artifact_id,
            environment_s=round(environment_s, 3),
        )
        info = activity.info()
        (artifact_id,) = self.store.register(
            [NewArtifact(ArtifactCategory.PACKAGE_BUILD_LOG, data, {log.name: log}, self.runs.key("log"))],
            workflow_id=info.workflow_id,
            activity_id=info.activity_id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.runs.expiration_days),
        )
        activity.heartbeat({"stage": "stored", "artifact_ids": [artifact_id]})
        self.runs.faults.after_store(ActivityName.RUN_ARCHIVE_BUILD)
        return RunOutcome(
            result=RunResult.PASS if built else RunResult.FAIL,
            exit_code=out.outcome.returncode,
            log_artifact_id=artifact_id,
            duration_s=duration,
            started_at=started,
            worker=WORKER_IDENTITY,
        )


def build_outcome_from(stored: list[StoredArtifact]) -> RunOutcome | None:
    """The outcome an interrupted try stored (its build log says it), or None."""
    found = next((a for a in stored if a.category == ArtifactCategory.PACKAGE_BUILD_LOG), None)
    if found is None:
        return None
    built = found.data.get("result") == TaskResult.SUCCESS
    return RunOutcome(
        result=RunResult.PASS if built else RunResult.FAIL,
        exit_code=int(found.data["exit_code"]),
        log_artifact_id=found.id,
        duration_s=float(found.data.get("duration_s") or 0.0),
        worker=WORKER_IDENTITY,
    )
