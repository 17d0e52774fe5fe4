"""The activities that build, lint and test an upload with an executor and store what they produce.

Each tool activity can run twice without harm: its artifacts carry idempotency keys (workflow id,
activity id, name) and are registered together with its task-history row in one short transaction; a
retry first looks for what an interrupted attempt stored (activities/uploads/resume.py) and reuses it.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.debian.bad_upload import BadUpload
from activities.debian.packages import binary_data, changes_artifact
from activities.debian.parsing import describe_tests, lintian_counts, parse_lintian
from activities.errors import translate_errors
from activities.storage.store import NewArtifact, Relation
from activities.tools.executors import lintian_version, run_lintian
from activities.tools.process import ProcessOutcome, require_tool
from activities.tools.runs import ToolRuns
from activities.uploads.resume import autopkgtest_result_from, build_result_from, lintian_result_from
from models.architectures import builds_on
from models.artifacts import LintianData, PackageBuildLogData, SourcePackageData
from models.payloads import (
    AutopkgtestResult,
    BuildInput,
    BuildResult,
    CheckInput,
    DescribeUploadInput,
    LintianResult,
    UploadDescription,
)
from models.tables import Artifact, RelationType
from models.vocabulary import ActivityName, ArtifactCategory, TaskName, TaskResult


def _no_epoch(version: str) -> str:
    return version.split(":", 1)[-1]


class UploadTask(Protocol):
    """What a task of an upload is about: its task-history subject and context."""

    source: str
    version: str
    suite: str
    architecture: str


def history_row(
    name: str,
    params: UploadTask,
    started: dt.datetime,
    duration: float,
    result: TaskResult,
    usage: list[ProcessOutcome],
    **data: object,
) -> dict[str, Any]:
    """The task-history row of one task of an upload (TaskHistoryWriter.add's arguments)."""
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


class DebianTasks:
    """Activities sharing one artifact store, one executor and the database."""

    def __init__(self, runs: ToolRuns) -> None:
        self.runs = runs
        self.sessions = runs.sessions
        self.store = runs.store
        self.executor = runs.executor

    @activity.defn(name=ActivityName.DESCRIBE_UPLOAD)
    def describe_upload(self, params: DescribeUploadInput) -> UploadDescription:
        with translate_errors(), self.sessions() as session:
            row = session.scalar(select(Artifact).where(Artifact.id == params.upload_artifact_id))
            if row is None or row.category != ArtifactCategory.SOURCE_PACKAGE:
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

    @activity.defn(name=ActivityName.BUILD_PACKAGE)
    def build_package(self, params: BuildInput) -> BuildResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(build_result_from)
            if reused is not None:
                return reused
            with self.runs.workspace() as work:
                return self._build(params, work, started, clock)

    def _build(self, params: BuildInput, work: Path, started: dt.datetime, clock: float) -> BuildResult:
        dsc = self.runs.source_files(params.upload_artifact_id, work / "in")
        log = work / f"{params.source}_{_no_epoch(params.version)}_{params.architecture}.build"
        out = self.executor.build(
            dsc,
            work,
            suite=params.suite,
            architecture=params.architecture,
            build_arch_all=params.build_arch_all,
            log=log,
            hooks=self.runs.hooks("build"),
        )
        environment_s = self.runs.environment_seconds(
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
        artifacts = [
            NewArtifact(ArtifactCategory.PACKAGE_BUILD_LOG, log_data, {log.name: log}, self.runs.key("log"))
        ]
        relations = [Relation(0, params.upload_artifact_id, RelationType.RELATES_TO)]
        if out.environment_artifact_id is not None:
            relations.append(Relation(0, out.environment_artifact_id, RelationType.RELATES_TO))
        packages: list[str] = []
        if ok and out.changes is not None:
            artifacts.append(changes_artifact(out.changes, self.runs.key(out.changes.name)))
            relations.append(Relation(1, params.upload_artifact_id, RelationType.RELATES_TO))
            for deb in out.debs:
                data = binary_data(deb)
                packages.append(data.package)
                index = len(artifacts)
                artifacts.append(
                    NewArtifact(
                        ArtifactCategory.BINARY_PACKAGE, data, {deb.name: deb}, self.runs.key(deb.name)
                    )
                )
                relations += [
                    Relation(index, params.upload_artifact_id, RelationType.BUILT_USING),
                    Relation(1, index, RelationType.EXTENDS, target_in_batch=True),
                    Relation(0, index, RelationType.RELATES_TO, target_in_batch=True),
                ]
        history = self._history(TaskName.BUILD, params, started, duration, result, [out.outcome])
        ids = self.runs.store_outputs(artifacts, relations, history, ActivityName.BUILD_PACKAGE)
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
        return history_row(name, params, started, duration, result, usage, **data)

    def _binaries(self, params: CheckInput, work: Path) -> tuple[Path, list[Path]]:
        dsc = self.runs.source_files(params.upload_artifact_id, work / "in")
        binaries = self.store.materialize(params.binary_artifact_ids, work / "in")
        debs = [p for files in binaries.values() for p in files.values() if p.suffix == ".deb"]
        return dsc, debs

    @activity.defn(name=ActivityName.RUN_LINTIAN)
    def run_lintian(self, params: CheckInput) -> LintianResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(lintian_result_from)
            if reused is not None:
                return reused
            # Before the source is fetched and re-checked: a worker without lintian says so at once.
            require_tool("lintian", "lintian")
            with self.runs.workspace() as work:
                return self._lintian(params, work, started, clock)

    def _lintian(self, params: CheckInput, work: Path, started: dt.datetime, clock: float) -> LintianResult:
        dsc, debs = self._binaries(params, work)
        log = work / "lintian.txt"
        outcome = run_lintian([dsc, *debs], workdir=work, log=log, hooks=self.runs.hooks("lintian"))
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
        (artifact_id,) = self.runs.store_outputs(
            [NewArtifact(ArtifactCategory.LINTIAN, data, {log.name: log}, self.runs.key("lintian"))],
            [Relation(0, target, RelationType.RELATES_TO) for target in related],
            self._history(TaskName.LINTIAN, params, started, duration, result, [outcome], counts=counts),
            ActivityName.RUN_LINTIAN,
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

    @activity.defn(name=ActivityName.RUN_AUTOPKGTEST)
    def run_autopkgtest(self, params: CheckInput) -> AutopkgtestResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(autopkgtest_result_from)
            if reused is not None:
                return reused
            with self.runs.workspace() as work:
                return self._autopkgtest(params, work, started, clock)

    def _autopkgtest(
        self, params: CheckInput, work: Path, started: dt.datetime, clock: float
    ) -> AutopkgtestResult:
        dsc, debs = self._binaries(params, work)
        run = self.runs.run_tests(
            dsc,
            debs,
            suite=params.suite,
            architecture=params.architecture,
            work=work,
            stage="autopkgtest",
            subject=params.source,
        )
        outcome = run.outcome
        duration = time.monotonic() - clock - run.environment_s
        data = run.data(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            suite=params.suite,
            virt_server=self.runs.virt_server,
            duration_s=duration,
        )
        result = TaskResult(data.result)
        (artifact_id,) = self.runs.store_outputs(
            [NewArtifact(ArtifactCategory.AUTOPKGTEST, data, run.files, self.runs.key("autopkgtest"))],
            [
                Relation(0, t, RelationType.RELATES_TO)
                for t in [params.upload_artifact_id, *params.binary_artifact_ids]
            ],
            self._history(
                TaskName.AUTOPKGTEST,
                params,
                started,
                duration,
                result,
                [outcome],
                exit_code=outcome.returncode,
            ),
            ActivityName.RUN_AUTOPKGTEST,
        )
        return AutopkgtestResult(
            result=result,
            exit_code=outcome.returncode,
            artifact_id=artifact_id,
            tests={name: t.status for name, t in run.tests.items()},
            duration_s=duration,
            summary=describe_tests(outcome.returncode, run.tests),
            tries=activity.info().attempt,
        )
