"""The activities that build, lint and test an upload with an executor and store what they produce.

Each tool activity can run twice without harm: its artifacts carry idempotency keys (workflow id,
activity id, name) and are registered together with its task-history row in one short transaction; a
retry first looks for what an interrupted attempt stored (activities/resume.py) and reuses it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import faults
from activities.bad_upload import BadUpload
from activities.dsc import check_dsc
from activities.environments import record_environment
from activities.errors import translate_errors
from activities.executors import EnvironmentUse, Executor, Hooks, lintian_version, run_lintian
from activities.history import add_task_history
from activities.packages import binary_data, changes_artifact
from activities.parsing import (
    autopkgtest_result,
    describe_tests,
    lintian_counts,
    parse_autopkgtest_summary,
    parse_lintian,
)
from activities.process import ProcessOutcome, require_tool
from activities.resume import autopkgtest_result_from, build_result_from, lintian_result_from
from activities.source_archives import DEFAULT_MAX_MEMBERS
from activities.store import ArtifactStore, NewArtifact, Relation, StoredArtifact
from models.architectures import builds_on
from models.artifacts import (
    AutopkgtestData,
    AutopkgtestTestResult,
    LintianData,
    PackageBuildLogData,
    SourcePackageData,
)
from models.payloads import (
    AutopkgtestResult,
    BuildInput,
    BuildResult,
    CheckInput,
    DescribeUploadInput,
    LintianResult,
    TaskResult,
    UploadDescription,
)
from models.tables import Artifact, RelationType
from models.verdicts import INFRASTRUCTURE_EXIT_CODES

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


def _no_epoch(version: str) -> str:
    return version.split(":", 1)[-1]


class DebianTasks:
    """Activities sharing one artifact store, one executor and the database."""

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
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.executor = executor
        self.scratch_dir = scratch_dir
        self.heartbeat_interval = heartbeat_interval
        self.expiration_days = expiration_days
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_archive_members = max_archive_members

    # -- helpers ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[Path]:
        scratch = self.scratch_dir.resolve()
        scratch.mkdir(parents=True, exist_ok=True)
        info = activity.info()
        path = Path(tempfile.mkdtemp(prefix=f"{info.activity_type}-", dir=scratch))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _hooks(self, stage: str) -> Hooks:
        def tick(elapsed: float) -> None:
            activity.heartbeat({"stage": stage, "elapsed_s": round(elapsed, 1)})

        return Hooks(tick=tick, cancelled=activity.is_cancelled, interval=self.heartbeat_interval)

    def _key(self, name: str) -> str:
        info = activity.info()
        return f"{info.workflow_id}/{info.activity_id}/{name}"

    def _resume(self, rebuild: Callable[[list[StoredArtifact], int], R | None]) -> R | None:
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

    def _store(
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
                add_task_history(session, workflow_id=info.workflow_id, **history)

        ids = self.store.register(
            artifacts,
            workflow_id=info.workflow_id,
            activity_id=info.activity_id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expiration_days),
            relations=relations,
            also=record,
        )
        activity.heartbeat({"stage": "stored", "artifact_ids": ids})
        faults.after_store(activity_type)
        return ids

    def _environment_seconds(
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
                context=f"{suite}/{architecture}",
                workflow_id=info.workflow_id,
                wanted_by=f"{info.activity_type} {subject} ({info.activity_id})",
            )
        return use.seconds

    def _run_tests(
        self,
        dsc: Path,
        debs: list[Path],
        *,
        suite: str,
        architecture: str,
        work: Path,
        stage: str,
        subject: str,
    ) -> tuple[ProcessOutcome, dict[str, AutopkgtestTestResult], dict[str, Path], float]:
        """autopkgtest with the executor: its outcome, per-test results, the files to store and the seconds
        spent having the test environment (not part of the test's duration). A testbed failure is not a
        verdict on the package: it raises, and the retry policy runs it again."""
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
            hooks=self._hooks(stage),
        )
        outcome = tested.outcome
        environment_s = self._environment_seconds(
            tested.environment, subject=subject, suite=suite, architecture=architecture
        )
        if outcome.returncode in INFRASTRUCTURE_EXIT_CODES:
            tail = log.read_text(errors="replace")[-800:]
            raise ApplicationError(
                f"autopkgtest testbed failure (exit {outcome.returncode}): {tail}",
                type="AutopkgtestInfrastructureError",
            )
        tests, files = autopkgtest_outputs(log, summary, output_dir)
        return outcome, tests, files, environment_s

    def _source_files(self, upload_artifact_id: int, work: Path) -> Path:
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

    # -- activities ------------------------------------------------------------------------------

    @activity.defn(name="describe_upload")
    def describe_upload(self, params: DescribeUploadInput) -> UploadDescription:
        with translate_errors(), self.sessions() as session:
            row = session.scalar(select(Artifact).where(Artifact.id == params.upload_artifact_id))
            if row is None or row.category != "debian:source-package":
                raise LookupError(f"artifact {params.upload_artifact_id} is not a debian:source-package")
            data = SourcePackageData.model_validate(row.data)
            if not data.architecture:  # stored without `debflow submit`, which refuses it
                raise BadUpload(
                    f"{data.dsc_filename}: its Architecture field is empty: nothing would be built"
                )
        return UploadDescription(
            source=data.name,
            version=data.version,
            architecture=data.architecture,
            binaries=data.binaries,
            has_tests="autopkgtest" in data.testsuite
            or any(t.startswith("autopkgtest-pkg-") for t in data.testsuite),
            builds_for=[a for a in params.architectures if builds_on(data.architecture, a, arch_all=False)]
            if params.architectures
            else None,
        )

    @activity.defn(name="build_package")
    def build_package(self, params: BuildInput) -> BuildResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self._resume(build_result_from)
            if reused is not None:
                return reused
            with self._workspace() as work:
                return self._build(params, work, started, clock)

    def _build(self, params: BuildInput, work: Path, started: dt.datetime, clock: float) -> BuildResult:
        dsc = self._source_files(params.upload_artifact_id, work / "in")
        log = work / f"{params.source}_{_no_epoch(params.version)}_{params.architecture}.build"
        out = self.executor.build(
            dsc,
            work,
            suite=params.suite,
            architecture=params.architecture,
            build_arch_all=params.build_arch_all,
            log=log,
            hooks=self._hooks("build"),
        )
        environment_s = self._environment_seconds(
            out.environment, subject=params.source, suite=params.suite, architecture=params.architecture
        )
        duration = time.monotonic() - clock - environment_s
        ok = out.outcome.returncode == 0 and out.changes is not None
        result = TaskResult.SUCCESS if ok else TaskResult.FAILURE
        log_data = PackageBuildLogData(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            filename=log.name,
            exit_code=out.outcome.returncode,
            result=str(result),
            duration_s=round(duration, 3),
            environment_artifact_id=out.environment_artifact_id,
            environment_s=round(environment_s, 3),
        )
        artifacts = [NewArtifact("debian:package-build-log", log_data, {log.name: log}, self._key("log"))]
        relations = [Relation(0, params.upload_artifact_id, RelationType.RELATES_TO)]
        if out.environment_artifact_id is not None:
            relations.append(Relation(0, out.environment_artifact_id, RelationType.RELATES_TO))
        packages: list[str] = []
        if ok and out.changes is not None:
            artifacts.append(changes_artifact(out.changes, self._key(out.changes.name)))
            relations.append(Relation(1, params.upload_artifact_id, RelationType.RELATES_TO))
            for deb in out.debs:
                data = binary_data(deb)
                packages.append(data.package)
                index = len(artifacts)
                artifacts.append(
                    NewArtifact("debian:binary-package", data, {deb.name: deb}, self._key(deb.name))
                )
                relations += [
                    Relation(index, params.upload_artifact_id, RelationType.BUILT_USING),
                    Relation(1, index, RelationType.EXTENDS, target_in_batch=True),
                    Relation(0, index, RelationType.RELATES_TO, target_in_batch=True),
                ]
        history = self._history("build", params, started, duration, result, [out.outcome])
        ids = self._store(artifacts, relations, history, "build_package")
        what = "built " + ", ".join(packages) if ok else f"build failed (exit {out.outcome.returncode})"
        return BuildResult(
            result=result,
            exit_code=out.outcome.returncode,
            log_artifact_id=ids[0],
            changes_artifact_id=ids[1] if ok else None,
            binary_artifact_ids=ids[2:],
            packages=packages,
            duration_s=duration,
            summary=what,
            tries=activity.info().attempt,
            environment_artifact_id=out.environment_artifact_id,
        )

    @staticmethod
    def _history(
        name: str,
        params: BuildInput | CheckInput,
        started: dt.datetime,
        duration: float,
        result: TaskResult,
        usage: list[ProcessOutcome],
        **data: object,
    ) -> dict[str, Any]:
        return {
            "task_name": name,
            "subject": params.source,
            "context": f"{params.suite}/{params.architecture}",
            "started_at": started,
            "duration_s": duration,
            "result": str(result),
            "usage": usage,
            "data": {"version": params.version, "activity_id": activity.info().activity_id, **data},
        }

    def _binaries(self, params: CheckInput, work: Path) -> tuple[Path, list[Path]]:
        dsc = self._source_files(params.upload_artifact_id, work / "in")
        binaries = self.store.materialize(params.binary_artifact_ids, work / "in")
        debs = [p for files in binaries.values() for p in files.values() if p.suffix == ".deb"]
        return dsc, debs

    @activity.defn(name="run_lintian")
    def run_lintian(self, params: CheckInput) -> LintianResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self._resume(lintian_result_from)
            if reused is not None:
                return reused
            # Before the source is fetched and re-checked: a worker without lintian says so at once.
            require_tool("lintian", "lintian")
            with self._workspace() as work:
                return self._lintian(params, work, started, clock)

    def _lintian(self, params: CheckInput, work: Path, started: dt.datetime, clock: float) -> LintianResult:
        dsc, debs = self._binaries(params, work)
        log = work / "lintian.txt"
        outcome = run_lintian([dsc, *debs], workdir=work, log=log, hooks=self._hooks("lintian"))
        tags = parse_lintian(log.read_text(errors="replace"))
        counts = lintian_counts(tags)
        if outcome.returncode != 0 and not counts.get("error"):
            tail = log.read_text(errors="replace")[-500:]
            raise ApplicationError(
                f"lintian failed without reporting tags (exit {outcome.returncode}): {tail}"
            )
        result = TaskResult.FAILURE if counts.get("error") else TaskResult.SUCCESS
        duration = time.monotonic() - clock
        data = LintianData(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            result=str(result),
            exit_code=outcome.returncode,
            lintian_version=lintian_version(),
            counts=counts,
            tags=tags,
            duration_s=round(duration, 3),
        )
        related = [params.upload_artifact_id, *params.binary_artifact_ids]
        (artifact_id,) = self._store(
            [NewArtifact("debian:lintian", data, {log.name: log}, self._key("lintian"))],
            [Relation(0, target, RelationType.RELATES_TO) for target in related],
            self._history("lintian", params, started, duration, result, [outcome], counts=counts),
            "run_lintian",
        )
        summary = ", ".join(f"{n} {sev}" for sev, n in counts.items()) or "no tags"
        return LintianResult(
            result=result,
            artifact_id=artifact_id,
            counts=counts,
            duration_s=duration,
            summary=summary,
            tries=activity.info().attempt,
        )

    @activity.defn(name="run_autopkgtest")
    def run_autopkgtest(self, params: CheckInput) -> AutopkgtestResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self._resume(autopkgtest_result_from)
            if reused is not None:
                return reused
            with self._workspace() as work:
                return self._autopkgtest(params, work, started, clock)

    def _autopkgtest(
        self, params: CheckInput, work: Path, started: dt.datetime, clock: float
    ) -> AutopkgtestResult:
        dsc, debs = self._binaries(params, work)
        outcome, tests, files, environment_s = self._run_tests(
            dsc,
            debs,
            suite=params.suite,
            architecture=params.architecture,
            work=work,
            stage="autopkgtest",
            subject=params.source,
        )
        result = autopkgtest_result(outcome.returncode)
        duration = time.monotonic() - clock - environment_s
        data = AutopkgtestData(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            suite=params.suite,
            result=str(result),
            exit_code=outcome.returncode,
            virt_server=f"{self.executor.name}:{self.executor.virt_server}",
            tests=tests,
            duration_s=round(duration, 3),
            environment_s=round(environment_s, 3),
        )
        (artifact_id,) = self._store(
            [NewArtifact("debian:autopkgtest", data, files, self._key("autopkgtest"))],
            [
                Relation(0, t, RelationType.RELATES_TO)
                for t in [params.upload_artifact_id, *params.binary_artifact_ids]
            ],
            self._history(
                "autopkgtest", params, started, duration, result, [outcome], exit_code=outcome.returncode
            ),
            "run_autopkgtest",
        )
        return AutopkgtestResult(
            result=result,
            exit_code=outcome.returncode,
            artifact_id=artifact_id,
            tests={name: t.status for name, t in tests.items()},
            duration_s=duration,
            summary=describe_tests(outcome.returncode, tests),
            tries=activity.info().attempt,
        )
