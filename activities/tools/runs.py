"""Running a Debian tool inside an activity: a scratch workspace, heartbeats, resuming after a crash,
storing outputs with their task-history row, and autopkgtest with an executor.

Shared by the upload activities (uploads/debian_tasks.py) and the campaign's real runs
(campaigns/archive_tests.py), which both hold one ToolRuns rather than inherit from each other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.debian.bad_upload import BadUpload
from activities.debian.dsc import check_dsc
from activities.debian.parsing import parse_autopkgtest_summary
from activities.debian.source_archives import DEFAULT_MAX_MEMBERS
from activities.faults import NO_FAULTS, FaultInjector
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore, NewArtifact, Relation, StoredArtifact
from activities.tools.environments import record_environment
from activities.tools.executors import EnvironmentUse, Executor, Hooks
from activities.tools.process import ProcessOutcome
from models.artifacts import AutopkgtestData, AutopkgtestTestResult
from models.verdicts import INFRASTRUCTURE_EXIT_CODES
from models.vocabulary import autopkgtest_result

MAX_OUTPUT_FILE = 64 * 1024 * 1024
R = TypeVar("R")


def autopkgtest_outputs(
    log: Path, summary: Path, output_dir: Path
) -> tuple[dict[str, AutopkgtestTestResult], dict[str, Path]]:
    """The per-test results of an autopkgtest run and the files to store: log, summary and its output
    directory (files up to MAX_OUTPUT_FILE, no symlinks)."""
    tests = parse_autopkgtest_summary(summary.read_text(errors="replace") if summary.exists() else "")
    files = {"log": log}
    if summary.exists():
        files["summary"] = summary
    if output_dir.is_dir():
        for path in sorted(output_dir.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_OUTPUT_FILE:
                files[f"output/{path.relative_to(output_dir)}"] = path
    return tests, files


@dataclass(frozen=True)
class TestRun:
    """One autopkgtest run that gave a verdict: its process, per-test results, files to store and the
    seconds spent having its environment (not part of the test's duration)."""

    __test__ = False  # not a pytest test class

    outcome: ProcessOutcome
    tests: dict[str, AutopkgtestTestResult]
    files: dict[str, Path]
    environment_s: float

    def data(
        self, *, source: str, version: str, architecture: str, suite: str, virt_server: str, duration_s: float
    ) -> AutopkgtestData:
        """The debian:autopkgtest artifact of this run. Upload and campaign runs both store this, so a
        code reads the same everywhere (models/vocabulary.py `autopkgtest_result`)."""
        return AutopkgtestData(
            source=source,
            version=version,
            architecture=architecture,
            suite=suite,
            result=str(autopkgtest_result(self.outcome.returncode)),
            exit_code=self.outcome.returncode,
            virt_server=virt_server,
            tests=self.tests,
            duration_s=round(duration_s, 3),
            environment_s=round(self.environment_s, 3),
        )


class ToolRuns:
    """The artifact store, executor, database and policies the tool activities share."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        executor: Executor,
        scratch_dir: Path,
        heartbeat_interval: float,
        expiration_days: int,
        max_unpacked_bytes: int = 4 * 1024**3,
        max_archive_members: int = DEFAULT_MAX_MEMBERS,
        history: TaskHistoryWriter | None = None,
        faults: FaultInjector = NO_FAULTS,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.executor = executor
        self.scratch_dir = scratch_dir
        self.heartbeat_interval = heartbeat_interval
        self.expiration_days = expiration_days
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_archive_members = max_archive_members
        self.history = history or TaskHistoryWriter()
        self.faults = faults

    @property
    def virt_server(self) -> str:
        return f"{self.executor.name}:{self.executor.virt_server}"

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Path]:
        scratch = self.scratch_dir.resolve()
        scratch.mkdir(parents=True, exist_ok=True)
        info = activity.info()
        path = Path(tempfile.mkdtemp(prefix=f"{info.activity_type}-", dir=scratch))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def hooks(self, stage: str) -> Hooks:
        def tick(elapsed: float) -> None:
            activity.heartbeat({"stage": stage, "elapsed_s": round(elapsed, 1)})

        return Hooks(tick=tick, cancelled=activity.is_cancelled, interval=self.heartbeat_interval)

    def key(self, name: str) -> str:
        info = activity.info()
        return f"{info.workflow_id}/{info.activity_id}/{name}"

    def resume(self, rebuild: Callable[[list[StoredArtifact], int], R | None]) -> R | None:
        """On a retry, the result an interrupted attempt already stored (None: run the tool)."""
        info = activity.info()
        if info.attempt == 1:
            return None
        reached = info.heartbeat_details[0] if info.heartbeat_details else None
        stored = self.store.activity_artifacts(info.workflow_id or "", info.activity_id)
        found = rebuild(stored, info.attempt)
        if found is not None:
            activity.logger.info(
                "try %d reuses the outputs an interrupted try stored (last heartbeat: %s)",
                info.attempt,
                reached,
            )
        return found

    def store_outputs(
        self,
        artifacts: list[NewArtifact],
        relations: list[Relation],
        history: dict[str, Any],
        activity_type: str,
    ) -> list[int]:
        """Register the artifacts and the task-history row in one transaction; then tell Temporal (by
        heartbeat) that the outputs are stored."""
        info = activity.info()

        def record(session: Session, fresh: bool) -> None:
            if fresh:  # a concurrent, older attempt that stored the same keys has recorded it
                self.history.add(session, workflow_id=info.workflow_id, **history)

        ids = self.store.register(
            artifacts,
            workflow_id=info.workflow_id,
            activity_id=info.activity_id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expiration_days),
            relations=relations,
            also=record,
        )
        activity.heartbeat({"stage": "stored", "artifact_ids": ids})
        self.faults.after_store(activity_type)
        return ids

    def environment_seconds(
        self, use: EnvironmentUse | None, *, subject: str, suite: str, architecture: str
    ) -> float:
        """The seconds a task spent having its environment, to leave out of the task's own duration;
        making it or waiting for it is recorded as a task of its own."""
        if use is None:
            return 0.0
        info = activity.info()
        with self.sessions.begin() as session:
            record_environment(
                session,
                use,
                history=self.history,
                context=f"{suite}/{architecture}",
                workflow_id=info.workflow_id,
                wanted_by=f"{info.activity_type} {subject} ({info.activity_id})",
            )
        return use.seconds

    def run_tests(
        self,
        dsc: Path,
        debs: list[Path],
        *,
        suite: str,
        architecture: str,
        work: Path,
        stage: str,
        subject: str,
    ) -> TestRun:
        """autopkgtest with the executor. A testbed failure is not a verdict on the package: it raises,
        and the retry policy runs it again."""
        output_dir, summary, log = work / "out", work / "summary", work / "autopkgtest.log"
        tested = self.executor.autopkgtest(
            dsc,
            debs,
            suite=suite,
            architecture=architecture,
            workdir=work,
            output_dir=output_dir,
            summary=summary,
            log=log,
            hooks=self.hooks(stage),
        )
        outcome = tested.outcome
        environment_s = self.environment_seconds(
            tested.environment, subject=subject, suite=suite, architecture=architecture
        )
        if outcome.returncode in INFRASTRUCTURE_EXIT_CODES:
            tail = log.read_text(errors="replace")[-800:]
            raise ApplicationError(
                f"autopkgtest testbed failure (exit {outcome.returncode}): {tail}",
                type="AutopkgtestInfrastructureError",
            )
        tests, files = autopkgtest_outputs(log, summary, output_dir)
        return TestRun(outcome, tests, files, environment_s)

    def source_files(self, upload_artifact_id: int, work: Path) -> Path:
        files = self.store.materialize([upload_artifact_id], work)[upload_artifact_id]
        # The upload was checked when submitted; an artifact may come from elsewhere (a workflow started
        # without `debflow submit`), so the same rules apply again before any executor extracts it.
        dsc = next((path for name, path in files.items() if name.endswith(".dsc")), None)
        if dsc is None:
            raise BadUpload(f"artifact {upload_artifact_id} holds no .dsc")
        check_dsc(
            dsc,
            max_bytes=1 << 62,  # the files are stored already: their size is not this check's concern
            max_unpacked_bytes=self.max_unpacked_bytes,
            max_archive_members=self.max_archive_members,
        )
        return dsc
