"""The debdiff, blhc and piuparts activities of an upload: each a check of one build, stored as an artifact
with its task-history row in one transaction (idempotency keys: workflow id, activity id, name), and
resumed from what an interrupted try stored (activities/qa/resume.py)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaigns.archive_files import PoolCache
from activities.errors import translate_errors
from activities.qa import blhc, debdiff, piuparts
from activities.qa.resume import blhc_result_from, debdiff_result_from, piuparts_result_from
from activities.qa.suite_lintian import SuiteLintian
from activities.qa.suite_version import fetch, suite_version
from activities.storage.store import NewArtifact, Relation
from activities.tools.environments import EnvironmentStore
from activities.tools.process import ProcessOutcome, require_tool
from activities.tools.runs import ToolRuns
from activities.uploads.debian_tasks import history_row
from models.artifacts import BlhcData, DebdiffData, PiupartsData
from models.payloads import BlhcResult, DebdiffResult, PiupartsResult, QaCheckInput
from models.tables import RelationType
from models.vocabulary import ActivityName, ArtifactCategory, TaskName, TaskResult


class QaTasks:
    """The three activities, sharing the tool runs of the upload activities, the host's archive file
    cache and the environment tarballs piuparts unpacks its testbed from."""

    def __init__(self, runs: ToolRuns, *, pool_cache: PoolCache, environments: EnvironmentStore) -> None:
        self.runs = runs
        self.store = runs.store
        self.pool_cache = pool_cache
        self.environments = environments
        self.lintian = SuiteLintian(runs)

    def all(self) -> list[Any]:
        return [self.run_debdiff, self.run_blhc, self.run_piuparts]

    @staticmethod
    def _history(
        name: str,
        params: QaCheckInput,
        started: dt.datetime,
        duration: float,
        result: TaskResult,
        usage: list[ProcessOutcome],
        **data: object,
    ) -> dict[str, Any]:
        return history_row(name, params, started, duration, result, usage, **data)

    def _store(
        self,
        category: ArtifactCategory,
        data: Any,
        files: dict[str, Path],
        related: list[int],
        history: dict[str, Any],
        activity_name: str,
    ) -> int:
        (artifact_id,) = self.runs.store_outputs(
            [NewArtifact(category, data, files, self.runs.key(str(category)))],
            [Relation(0, target, RelationType.RELATES_TO) for target in related],
            history,
            activity_name,
        )
        return artifact_id

    def _upload(self, params: QaCheckInput, work: Path) -> tuple[Path, list[Path]]:
        """The upload's .dsc and .debs, without -dbgsym packages: Debian keeps those in a separate
        archive, so the suite never has them to compare with, and piuparts has nothing to learn there."""
        dsc = self.runs.source_files(params.upload_artifact_id, work / "in")
        binaries = self.store.materialize(params.binary_artifact_ids, work / "in")
        debs = [p for files in binaries.values() for p in files.values() if p.suffix == ".deb"]
        return dsc, [d for d in debs if not d.name.split("_", 1)[0].endswith("-dbgsym")]

    # --- debdiff ---------------------------------------------------------------------------------

    @activity.defn(name=ActivityName.RUN_DEBDIFF)
    def run_debdiff(self, params: QaCheckInput) -> DebdiffResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(debdiff_result_from)
            if reused is not None:
                return reused
            require_tool("debdiff", "devscripts")
            require_tool("wdiff", "wdiff")  # debdiff compares control files with it
            with self.runs.workspace() as work:
                return self._debdiff(params, work, started, clock)

    def _debdiff(self, params: QaCheckInput, work: Path, started: dt.datetime, clock: float) -> DebdiffResult:
        found = suite_version(
            self.runs.sessions, suite=params.suite, source=params.source, architecture=params.architecture
        )
        log = work / "debdiff.txt"
        hooks = self.runs.hooks("debdiff")
        related = [params.upload_artifact_id, *params.binary_artifact_ids]
        if found is None:
            log.write_text(f"{params.source} is not in suite {params.suite}: nothing to compare with\n")
            data = DebdiffData(
                source=params.source,
                version=params.version,
                architecture=params.architecture,
                suite=params.suite,
                suite_version=None,
                result=str(TaskResult.SKIPPED),
            )
            duration = time.monotonic() - clock
            artifact_id = self._store(
                ArtifactCategory.DEBDIFF,
                data.model_copy(update={"duration_s": round(duration, 3)}),
                {log.name: log},
                related,
                self._history(TaskName.DEBDIFF, params, started, duration, TaskResult.SKIPPED, []),
                ActivityName.RUN_DEBDIFF,
            )
            return DebdiffResult(
                result=TaskResult.SKIPPED,
                artifact_id=artifact_id,
                duration_s=duration,
                summary=f"not in {params.suite}: nothing to compare",
                tries=activity.info().attempt,
            )
        dsc, debs = self._upload(params, work)
        old_dsc, old_debs = fetch(self.pool_cache, found, work / "suite")
        outcome = debdiff.run_debdiff([old_dsc], [dsc], workdir=work, log=log, hooks=hooks)
        if outcome.returncode not in (0, debdiff.DIFFERENT):
            tail = log.read_text(errors="replace")[-500:]
            raise ApplicationError(f"debdiff of the sources failed (exit {outcome.returncode}): {tail}")
        files_changed, added, removed = debdiff.source_summary(log.read_text(errors="replace"))
        binaries_log = work / "binaries.txt"
        binaries_log.touch()
        binaries = debdiff.binary_debdiffs(old_debs, debs, workdir=work, log=binaries_log, hooks=hooks)
        suite_tags, suite_lintian_id = self.lintian.tags(
            found, old_dsc, old_debs, work / "lint-suite", params.architecture
        )
        upload_tags = self.lintian.run(dsc, debs, work / "lint-upload")
        new_tags, resolved = debdiff.tag_diff(suite_tags, found.version, upload_tags, params.version)
        duration = time.monotonic() - clock
        data = DebdiffData(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            suite=params.suite,
            suite_version=found.version,
            files_changed=files_changed,
            lines_added=added,
            lines_removed=removed,
            binaries=binaries,
            new_tags=new_tags,
            resolved_tags=resolved,
            suite_lintian_artifact_id=suite_lintian_id,
            result=str(TaskResult.SUCCESS),
            duration_s=round(duration, 3),
        )
        artifact_id = self._store(
            ArtifactCategory.DEBDIFF,
            data,
            {"source.debdiff": log, "binaries.debdiff": binaries_log},
            [*related, suite_lintian_id],
            self._history(
                TaskName.DEBDIFF,
                params,
                started,
                duration,
                TaskResult.SUCCESS,
                [outcome],
                against=found.version,
            ),
            ActivityName.RUN_DEBDIFF,
        )
        return DebdiffResult(
            result=TaskResult.SUCCESS,
            artifact_id=artifact_id,
            duration_s=duration,
            summary=debdiff.summarize(data),
            tries=activity.info().attempt,
            files_changed=files_changed,
            lines_added=added,
            lines_removed=removed,
            new_tags=len(new_tags),
            resolved_tags=len(resolved),
        )

    # --- blhc ------------------------------------------------------------------------------------

    @activity.defn(name=ActivityName.RUN_BLHC)
    def run_blhc(self, params: QaCheckInput) -> BlhcResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(blhc_result_from)
            if reused is not None:
                return reused
            require_tool("blhc", "blhc")
            with self.runs.workspace() as work:
                return self._blhc(params, work, started, clock)

    def _blhc(self, params: QaCheckInput, work: Path, started: dt.datetime, clock: float) -> BlhcResult:
        files = self.store.materialize([params.build_log_artifact_id], work / "in")[
            params.build_log_artifact_id
        ]
        if len(files) != 1:
            raise LookupError(f"artifact {params.build_log_artifact_id} is not one build log")
        (build_log,) = files.values()
        hooks = self.runs.hooks("blhc")
        tags_out, report = work / "blhc-tags.txt", work / "blhc.txt"
        outcome = blhc.run_blhc(build_log, workdir=work, output=tags_out, buildd=True, hooks=hooks)
        if outcome.returncode & blhc.INVALID_ARGUMENTS:
            raise ApplicationError(f"blhc failed (exit {outcome.returncode}): {tags_out.read_text()[-500:]}")
        readable = blhc.run_blhc(build_log, workdir=work, output=report, buildd=False, hooks=hooks)
        tags = blhc.parse_tags(tags_out.read_text(errors="replace"))
        result = blhc.blhc_result(tags)
        duration = time.monotonic() - clock
        data = BlhcData(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            result=str(result),
            exit_code=readable.returncode,
            tags=tags,
            duration_s=round(duration, 3),
        )
        artifact_id = self._store(
            ArtifactCategory.BLHC,
            data,
            {"blhc.txt": report, "blhc-tags.txt": tags_out},
            [params.build_log_artifact_id],
            self._history(
                TaskName.BLHC, params, started, duration, result, [outcome, readable], tags=len(tags)
            ),
            ActivityName.RUN_BLHC,
        )
        return BlhcResult(
            result=result,
            artifact_id=artifact_id,
            duration_s=duration,
            summary=blhc.summarize(tags),
            tries=activity.info().attempt,
            tags=tags,
        )

    # --- piuparts --------------------------------------------------------------------------------

    @activity.defn(name=ActivityName.RUN_PIUPARTS)
    def run_piuparts(self, params: QaCheckInput) -> PiupartsResult:
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(piuparts_result_from)
            if reused is not None:
                return reused
            require_tool("piuparts", "piuparts")
            with self.runs.workspace() as work:
                return self._piuparts(params, work, started, clock)

    def _piuparts(
        self, params: QaCheckInput, work: Path, started: dt.datetime, clock: float
    ) -> PiupartsResult:
        hooks = self.runs.hooks("piuparts")
        _, debs = self._upload(params, work)
        found = suite_version(
            self.runs.sessions, suite=params.suite, source=params.source, architecture=params.architecture
        )
        suite_debs = fetch(self.pool_cache, found, work / "suite")[1] if found else []
        environment = self.environments.get(params.suite, params.architecture, work, hooks)
        environment_s = self.runs.environment_seconds(
            environment.use, subject=params.source, suite=params.suite, architecture=params.architecture
        )
        run = piuparts.run_piuparts(environment.path, debs, suite_debs, workdir=work, hooks=hooks)
        if not run.ready:
            # The testbed never came up (a mirror down, a broken tarball): retried, never a verdict.
            raise ApplicationError(
                f"piuparts testbed failure (exit {run.outcome.returncode}): {run.summary}; "
                f"{run.log.read_text(errors='replace')[-600:]}",
                type="PiupartsInfrastructureError",
            )
        duration = time.monotonic() - clock - environment_s
        upgrade_from = found.version if found and suite_debs else None
        data = PiupartsData(
            source=params.source,
            version=params.version,
            architecture=params.architecture,
            suite=params.suite,
            result=str(run.result),
            exit_code=run.outcome.returncode,
            upgrade_from=upgrade_from,
            environment_artifact_id=environment.artifact_id,
            summary=run.summary,
            duration_s=round(duration, 3),
        )
        artifact_id = self._store(
            ArtifactCategory.PIUPARTS,
            data,
            {"piuparts.log": run.log},
            [params.upload_artifact_id, *params.binary_artifact_ids, environment.artifact_id],
            self._history(
                TaskName.PIUPARTS,
                params,
                started,
                duration,
                run.result,
                [run.outcome],
                exit_code=run.outcome.returncode,
            ),
            ActivityName.RUN_PIUPARTS,
        )
        return PiupartsResult(
            result=run.result,
            artifact_id=artifact_id,
            duration_s=duration,
            summary=piuparts.summarize_data(data),
            tries=activity.info().attempt,
            exit_code=run.outcome.returncode,
            upgrade_tested=upgrade_from is not None,
        )
