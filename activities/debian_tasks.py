"""The activities that build, lint and test an upload with an executor and store what they produce."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from debian.deb822 import Changes, Deb822
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import translate_errors
from activities.executors import Executor, Hooks
from activities.history import record_task
from activities.parsing import autopkgtest_result, lintian_counts, parse_autopkgtest_summary, parse_lintian
from activities.process import ProcessOutcome
from activities.store import ArtifactStore, NewArtifact, Relation
from models.artifacts import (
    AutopkgtestData,
    BinaryPackageData,
    LintianData,
    PackageBuildLogData,
    SourcePackageData,
    UploadData,
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

MAX_OUTPUT_FILE = 64 * 1024 * 1024


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
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.executor = executor
        self.scratch_dir = scratch_dir
        self.heartbeat_interval = heartbeat_interval
        self.expiration_days = expiration_days

    # -- helpers ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[Path]:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        info = activity.info()
        path = Path(tempfile.mkdtemp(prefix=f"{info.activity_type}-", dir=self.scratch_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _hooks(self, stage: str) -> Hooks:
        def tick(elapsed: float) -> None:
            activity.heartbeat({"stage": stage, "elapsed_s": round(elapsed, 1)})

        return Hooks(tick=tick, cancelled=activity.is_cancelled, interval=self.heartbeat_interval)

    def _expiry(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expiration_days)

    def _key(self, name: str) -> str:
        info = activity.info()
        return f"{info.workflow_id}/{info.activity_id}/{name}"

    def _register(self, artifacts: list[NewArtifact], relations: list[Relation]) -> list[int]:
        info = activity.info()
        return self.store.register(
            artifacts,
            workflow_id=info.workflow_id,
            activity_id=info.activity_id,
            expires_at=self._expiry(),
            relations=relations,
        )

    def _history(
        self,
        name: str,
        subject: str,
        context: str,
        started: dt.datetime,
        duration: float,
        result: TaskResult,
        usage: list[ProcessOutcome],
        data: dict[str, object],
    ) -> None:
        record_task(
            self.sessions,
            task_name=name,
            subject=subject,
            context=context,
            workflow_id=activity.info().workflow_id,
            started_at=started,
            duration_s=duration,
            result=str(result),
            usage=usage,
            data=data,
        )

    def _source_files(self, upload_artifact_id: int, work: Path) -> Path:
        files = self.store.materialize([upload_artifact_id], work)[upload_artifact_id]
        return next(path for name, path in files.items() if name.endswith(".dsc"))

    # -- activities ------------------------------------------------------------------------------

    @activity.defn(name="describe_upload")
    def describe_upload(self, params: DescribeUploadInput) -> UploadDescription:
        with translate_errors(), self.sessions() as session:
            row = session.scalar(select(Artifact).where(Artifact.id == params.upload_artifact_id))
            if row is None or row.category != "debian:source-package":
                raise LookupError(f"artifact {params.upload_artifact_id} is not a debian:source-package")
            data = SourcePackageData.model_validate(row.data)
        return UploadDescription(
            source=data.name,
            version=data.version,
            architecture=data.architecture,
            binaries=data.binaries,
            has_tests="autopkgtest" in data.testsuite
            or any(t.startswith("autopkgtest-pkg-") for t in data.testsuite),
        )

    @activity.defn(name="build_package")
    def build_package(self, params: BuildInput) -> BuildResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors(), self._workspace() as work:
            dsc = self._source_files(params.upload_artifact_id, work / "in")
            log = work / f"{params.source}_{_no_epoch(params.version)}_{params.architecture}.build"
            out = self.executor.build(
                dsc,
                work,
                architecture=params.architecture,
                build_arch_all=params.build_arch_all,
                log=log,
                hooks=self._hooks("build"),
            )
            ok = out.outcome.returncode == 0 and out.changes is not None
            result = TaskResult.SUCCESS if ok else TaskResult.FAILURE
            artifacts = [
                NewArtifact(
                    "debian:package-build-log",
                    PackageBuildLogData(
                        source=params.source,
                        version=params.version,
                        architecture=params.architecture,
                        filename=log.name,
                        exit_code=out.outcome.returncode,
                        result=str(result),
                    ),
                    {log.name: log},
                    self._key("log"),
                )
            ]
            relations = [Relation(0, params.upload_artifact_id, RelationType.RELATES_TO)]
            packages: list[str] = []
            if ok and out.changes is not None:
                artifacts.append(self._changes_artifact(out.changes, out.debs))
                relations.append(Relation(1, params.upload_artifact_id, RelationType.RELATES_TO))
                for deb in out.debs:
                    data = self._binary_data(deb)
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
            ids = self._register(artifacts, relations)
        duration = time.monotonic() - clock
        self._history(
            "build",
            params.source,
            f"{params.suite}/{params.architecture}",
            started,
            duration,
            result,
            [out.outcome],
            {"version": params.version},
        )
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
        )

    def _changes_artifact(self, changes: Path, debs: list[Path]) -> NewArtifact:
        with open(changes) as f:
            fields = Changes(f)
        listed = {entry["name"] for entry in fields.get("Files", [])}
        files = {changes.name: changes}
        files |= {name: changes.parent / name for name in listed if not name.endswith(".deb")}
        return NewArtifact(
            "debian:upload",
            UploadData(
                source=fields["Source"],
                version=fields["Version"],
                architecture=fields.get("Architecture", "").split(),
                changes_filename=changes.name,
                changes_fields={k: v for k, v in fields.items() if isinstance(v, str) and "\n" not in v},
            ),
            files,
            self._key(changes.name),
        )

    @staticmethod
    def _binary_data(deb: Path) -> BinaryPackageData:
        fields = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, check=True).stdout
        control = Deb822(fields)
        source_field = control.get("Source", control["Package"])
        source, _, source_version = source_field.partition(" ")
        return BinaryPackageData(
            package=control["Package"],
            version=control["Version"],
            architecture=control["Architecture"],
            source=source,
            source_version=source_version.strip("()") or control["Version"],
            depends=control.get("Depends", ""),
            pre_depends=control.get("Pre-Depends", ""),
            provides=control.get("Provides", ""),
            filename=deb.name,
        )

    def _binaries(self, params: CheckInput, work: Path) -> tuple[Path, list[Path]]:
        dsc = self._source_files(params.upload_artifact_id, work / "in")
        binaries = self.store.materialize(params.binary_artifact_ids, work / "in")
        debs = [p for files in binaries.values() for p in files.values() if p.suffix == ".deb"]
        return dsc, debs

    @activity.defn(name="run_lintian")
    def run_lintian(self, params: CheckInput) -> LintianResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors(), self._workspace() as work:
            dsc, debs = self._binaries(params, work)
            log = work / "lintian.txt"
            outcome = self.executor.lintian([dsc, *debs], workdir=work, log=log, hooks=self._hooks("lintian"))
            tags = parse_lintian(log.read_text(errors="replace"))
            counts = lintian_counts(tags)
            if outcome.returncode != 0 and not counts.get("error"):
                tail = log.read_text(errors="replace")[-500:]
                raise ApplicationError(
                    f"lintian failed without reporting tags (exit {outcome.returncode}): {tail}"
                )
            result = TaskResult.FAILURE if counts.get("error") else TaskResult.SUCCESS
            version = self.executor.lintian_version()
            data = LintianData(
                source=params.source,
                version=params.version,
                architecture=params.architecture,
                result=str(result),
                exit_code=outcome.returncode,
                lintian_version=version,
                counts=counts,
                tags=tags,
            )
            related = [params.upload_artifact_id, *params.binary_artifact_ids]
            (artifact_id,) = self._register(
                [NewArtifact("debian:lintian", data, {log.name: log}, self._key("lintian"))],
                [Relation(0, target, RelationType.RELATES_TO) for target in related],
            )
        duration = time.monotonic() - clock
        self._history(
            "lintian",
            params.source,
            f"{params.suite}/{params.architecture}",
            started,
            duration,
            result,
            [outcome],
            {"version": params.version, "counts": counts},
        )
        summary = ", ".join(f"{n} {sev}" for sev, n in counts.items()) or "no tags"
        return LintianResult(
            result=result, artifact_id=artifact_id, counts=counts, duration_s=duration, summary=summary
        )

    @activity.defn(name="run_autopkgtest")
    def run_autopkgtest(self, params: CheckInput) -> AutopkgtestResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors(), self._workspace() as work:
            dsc, debs = self._binaries(params, work)
            output_dir, summary_file, log = work / "out", work / "summary", work / "autopkgtest.log"
            outcome = self.executor.autopkgtest(
                dsc,
                debs,
                workdir=work,
                output_dir=output_dir,
                summary=summary_file,
                log=log,
                hooks=self._hooks("autopkgtest"),
            )
            result = autopkgtest_result(outcome.returncode)
            if result is TaskResult.ERROR:
                tail = log.read_text(errors="replace")[-800:]
                # Not a verdict on the package: let the retry policy run it again.
                raise ApplicationError(
                    f"autopkgtest testbed failure (exit {outcome.returncode}): {tail}",
                    type="AutopkgtestInfrastructureError",
                )
            tests = parse_autopkgtest_summary(
                summary_file.read_text(errors="replace") if summary_file.exists() else ""
            )
            files = {"log": log}
            if summary_file.exists():
                files["summary"] = summary_file
            if output_dir.is_dir():
                for path in sorted(output_dir.rglob("*")):
                    if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_OUTPUT_FILE:
                        files[f"output/{path.relative_to(output_dir)}"] = path
            data = AutopkgtestData(
                source=params.source,
                version=params.version,
                architecture=params.architecture,
                suite=params.suite,
                result=str(result),
                exit_code=outcome.returncode,
                virt_server=f"{self.executor.name}:null",
                tests=tests,
            )
            (artifact_id,) = self._register(
                [NewArtifact("debian:autopkgtest", data, files, self._key("autopkgtest"))],
                [
                    Relation(0, t, RelationType.RELATES_TO)
                    for t in [params.upload_artifact_id, *params.binary_artifact_ids]
                ],
            )
        duration = time.monotonic() - clock
        self._history(
            "autopkgtest",
            params.source,
            f"{params.suite}/{params.architecture}",
            started,
            duration,
            result,
            [outcome],
            {"version": params.version, "exit_code": outcome.returncode},
        )
        passed = sum(t.status == "PASS" for t in tests.values())
        summary = f"{passed}/{len(tests)} tests passed (exit {outcome.returncode})"
        return AutopkgtestResult(
            result=result,
            exit_code=outcome.returncode,
            artifact_id=artifact_id,
            tests={name: t.status for name, t in tests.items()},
            duration_s=duration,
            summary=summary,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.describe_upload, self.build_package, self.run_lintian, self.run_autopkgtest]
