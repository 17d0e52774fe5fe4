"""lintian on both sides of a debdiff. The suite version's run is stored as a debian:lintian artifact and
reused: its idempotency key names the suite version's files (their SHA-256, from the imported index)
and the lintian version, so every upload of the source against that suite version shares one run."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy import select

from activities.debian.parsing import lintian_counts, parse_lintian
from activities.qa.suite_version import SuiteVersion
from activities.storage.store import NewArtifact
from activities.tools.executors import lintian_version, run_lintian
from activities.tools.runs import ToolRuns
from models.artifacts import LintianData, LintianTag
from models.tables import Artifact
from models.vocabulary import ArtifactCategory, TaskResult


def suite_key(found: SuiteVersion, tool: str) -> str:
    files = sorted(f.sha256 for f in (*found.source_files, *found.binaries))
    digest = hashlib.sha256("\n".join([tool, *files]).encode()).hexdigest()[:32]
    return f"suite-lintian/{found.source}/{found.version}/{digest}"


class SuiteLintian:
    """lintian runs of a debdiff activity."""

    def __init__(self, runs: ToolRuns) -> None:
        self.runs = runs

    def run(self, dsc: Path, debs: list[Path], work: Path) -> list[LintianTag]:
        work.mkdir(parents=True, exist_ok=True)
        log = work / "lintian.txt"
        outcome = run_lintian([dsc, *debs], workdir=work, log=log, hooks=self.runs.hooks("debdiff lintian"))
        tags = parse_lintian(log.read_text(errors="replace"))
        if outcome.returncode != 0 and not lintian_counts(tags).get("error"):
            raise RuntimeError(f"lintian failed (exit {outcome.returncode}): {log.read_text()[-500:]}")
        return tags

    def tags(
        self, found: SuiteVersion, dsc: Path, debs: list[Path], work: Path, architecture: str
    ) -> tuple[list[LintianTag], int]:
        """The suite version's tags and their artifact: stored by an earlier run, or run and stored now."""
        key = suite_key(found, lintian_version())
        now = dt.datetime.now(dt.UTC)
        with self.runs.sessions() as session:
            row = session.execute(
                select(Artifact.id, Artifact.data).where(
                    Artifact.idempotency_key == key,
                    Artifact.category == ArtifactCategory.LINTIAN,
                    (Artifact.expires_at.is_(None)) | (Artifact.expires_at > now + dt.timedelta(hours=1)),
                )
            ).first()
        if row is not None:
            return [LintianTag.model_validate(t) for t in row.data["tags"]], int(row.id)
        tags = self.run(dsc, debs, work)
        counts = lintian_counts(tags)
        data = LintianData(
            source=found.source,
            version=found.version,
            architecture=architecture,
            result=str(TaskResult.FAILURE if counts.get("error") else TaskResult.SUCCESS),
            exit_code=0,
            lintian_version=lintian_version(),
            counts=counts,
            tags=tags,
        )
        # No workflow or activity: the run belongs to the suite version, not to the upload that asked.
        (artifact_id,) = self.runs.store.register(
            [NewArtifact(ArtifactCategory.LINTIAN, data, {"lintian.txt": work / "lintian.txt"}, key)],
            expires_at=now + dt.timedelta(days=self.runs.expiration_days),
        )
        return tags, artifact_id
