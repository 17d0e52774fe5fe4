"""debdiff, blhc and piuparts results rebuilt from what an interrupted try already stored
(as activities/uploads/resume.py does for builds and the other checks)."""

from __future__ import annotations

from activities.qa import blhc, debdiff, piuparts
from activities.storage.store import StoredArtifact
from models.artifacts import BlhcData, DebdiffData, PiupartsData
from models.payloads import BlhcResult, DebdiffResult, PiupartsResult, TaskResult
from models.vocabulary import ArtifactCategory


def _find(stored: list[StoredArtifact], category: ArtifactCategory) -> StoredArtifact | None:
    return next((a for a in stored if a.category == category), None)


def debdiff_result_from(stored: list[StoredArtifact], tries: int) -> DebdiffResult | None:
    found = _find(stored, ArtifactCategory.DEBDIFF)
    if found is None:
        return None
    data = DebdiffData.model_validate(found.data)
    summary = debdiff.summarize(data)
    return DebdiffResult(
        result=TaskResult(data.result),
        artifact_id=found.id,
        duration_s=data.duration_s or 0.0,
        summary=f"{summary} (reused by try {tries})",
        tries=tries,
        reused=True,
        files_changed=data.files_changed,
        lines_added=data.lines_added,
        lines_removed=data.lines_removed,
        new_tags=len(data.new_tags),
        resolved_tags=len(data.resolved_tags),
    )


def blhc_result_from(stored: list[StoredArtifact], tries: int) -> BlhcResult | None:
    found = _find(stored, ArtifactCategory.BLHC)
    if found is None:
        return None
    data = BlhcData.model_validate(found.data)
    return BlhcResult(
        result=TaskResult(data.result),
        artifact_id=found.id,
        duration_s=data.duration_s or 0.0,
        summary=f"{blhc.summarize(data.tags)} (reused by try {tries})",
        tries=tries,
        reused=True,
        tags=data.tags,
    )


def piuparts_result_from(stored: list[StoredArtifact], tries: int) -> PiupartsResult | None:
    found = _find(stored, ArtifactCategory.PIUPARTS)
    if found is None:
        return None
    data = PiupartsData.model_validate(found.data)
    return PiupartsResult(
        result=TaskResult(data.result),
        artifact_id=found.id,
        duration_s=data.duration_s or 0.0,
        summary=f"{piuparts.summarize_data(data)} (reused by try {tries})",
        tries=tries,
        reused=True,
        exit_code=data.exit_code,
        upgrade_tested=data.upgrade_from is not None,
    )
