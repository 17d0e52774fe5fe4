"""A package's pages: the suite by architecture matrix of its latest results, the history of one suite
and architecture, and debci's latest.json / history.json. A few statements each, along
ix_artifact_check_source."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from models.vocabulary import ArtifactCategory, ItemCategory, TaskResult
from web.files import public_artifact

HISTORY_PAGE = 50
MATRIX_RUNS = 500  # newest runs of a package the matrix and its labels are computed from

# debci's words for a run's result (its `status`).
DEBCI_STATUS = {
    TaskResult.SUCCESS: "pass",
    TaskResult.FAILURE: "fail",
    TaskResult.SKIPPED: "neutral",
    TaskResult.ERROR: "tmpfail",
}
CHECK_NAMES = {
    ArtifactCategory.PACKAGE_BUILD_LOG: "build",
    ArtifactCategory.LINTIAN: "lintian",
    ArtifactCategory.AUTOPKGTEST: "autopkgtest",
}
_BATCH = re.compile(r"^(?P<campaign>.+)-[a-z0-9]+-batch-[0-9]{4}$")

# A build or lintian run names no suite: it takes the suite of its workflow's autopkgtest run, if any.
_RUNS = text(
    f"""
    WITH runs AS (
        SELECT a.id, a.category, a.created_at, a.workflow_id, a.data
        FROM artifact a
        WHERE (a.data ->> 'source') = :source
          AND a.category IN ('debian:autopkgtest', 'debian:package-build-log', 'debian:lintian')
          AND {public_artifact()}
        ORDER BY (a.data ->> 'source'), a.id DESC
        LIMIT :limit
    )
    SELECT id, category, created_at, workflow_id,
           coalesce(data ->> 'suite', max(data ->> 'suite') OVER (PARTITION BY workflow_id), '') AS suite,
           data ->> 'architecture', data ->> 'version', data ->> 'result', data ->> 'duration_s'
    FROM runs ORDER BY id DESC
    """
)
_VERDICTS = text(
    f"""
    SELECT ci.id, c.name, ci.data, ci.created_at
    FROM collection_item ci JOIN collection c ON c.id = ci.collection_id
    WHERE ci.category = '{ItemCategory.QA_RESULT}' AND (ci.data ->> 'package') = :source
      AND ci.data ? 'verdict'
    ORDER BY (ci.data ->> 'package'), ci.id DESC
    LIMIT 50
    """
)
# One suite and architecture: autopkgtest runs, newest first, a page before `before`; a run that is some
# campaign's stored reference says so (its qa-result item points at it).
_HISTORY = text(
    f"""
    SELECT a.id, a.created_at, a.workflow_id, a.data, ref.name AS reference_of
    FROM artifact a
    LEFT JOIN LATERAL (
        SELECT ci.name FROM collection_item ci
        WHERE ci.artifact_id = a.id AND ci.category = '{ItemCategory.QA_RESULT}' LIMIT 1
    ) ref ON true
    WHERE (a.data ->> 'source') = :source
      AND a.category IN ('debian:autopkgtest', 'debian:package-build-log', 'debian:lintian')  -- the index's
      AND a.category = 'debian:autopkgtest'
      AND (a.data ->> 'suite') = :suite AND (a.data ->> 'architecture') = :arch
      AND a.id < :before AND {public_artifact()}
    ORDER BY (a.data ->> 'source'), a.id DESC
    LIMIT :limit
    """
)


class Trigger(BaseModel):
    """What a run was part of: an upload run or a campaign (found from its workflow id)."""

    kind: str  # upload, campaign, other
    workflow_id: str
    campaign_id: str | None = None


def trigger_of(workflow_id: str | None) -> Trigger:
    if not workflow_id:
        return Trigger(kind="other", workflow_id="")
    batch = _BATCH.match(workflow_id)
    if batch:
        return Trigger(kind="campaign", workflow_id=workflow_id, campaign_id=batch["campaign"])
    return Trigger(kind="upload" if workflow_id.startswith("upload-") else "other", workflow_id=workflow_id)


class Cell(BaseModel):
    check: str
    artifact_id: int
    version: str
    result: str
    date: dt.datetime


class MatrixRow(BaseModel):
    suite: str
    architecture: str
    cells: dict[str, Cell] = Field(default_factory=dict)  # check name → its latest run
    label: str = ""  # always failing, had success, flaky (from the autopkgtest history)


class TargetResult(BaseModel):
    campaign_id: str
    suite: str
    architecture: str
    version: str
    verdict: str
    date: dt.datetime


class PackagePage(BaseModel):
    source: str
    matrix: list[MatrixRow]
    as_target: list[TargetResult]


def history_label(results: list[str]) -> str:
    """debci's reading of a history (newest first): never passed, passed before, or flipping."""
    decided = [r for r in results if r in (TaskResult.SUCCESS, TaskResult.FAILURE)]
    if not decided:
        return ""
    if all(r == TaskResult.FAILURE for r in decided):
        return "always failing"
    flips = sum(1 for a, b in itertools.pairwise(decided) if a != b)
    if flips >= 2:
        return "flaky"
    if decided[0] == TaskResult.FAILURE:
        return "had success"
    return ""


def package_page(db: Session, source: str) -> PackagePage | None:
    rows = db.execute(_RUNS, {"source": source, "limit": MATRIX_RUNS}).all()
    verdicts = db.execute(_VERDICTS, {"source": source}).all()
    if not rows and not verdicts:
        return None
    matrix: dict[tuple[str, str], MatrixRow] = {}
    histories: dict[tuple[str, str], list[str]] = {}
    for rid, category, created, _wf, suite, arch, version, result, _duration in rows:
        key = (suite or "?", arch or "?")
        row = matrix.setdefault(key, MatrixRow(suite=key[0], architecture=key[1]))
        check = CHECK_NAMES.get(category, category)
        if check not in row.cells:  # newest first: the first seen is the latest
            row.cells[check] = Cell(
                check=check, artifact_id=rid, version=version or "", result=result or "", date=created
            )
        if category == ArtifactCategory.AUTOPKGTEST:
            histories.setdefault(key, []).append(result or "")
    for key, row in matrix.items():
        row.label = history_label(histories.get(key, []))
    targets = [
        TargetResult(
            campaign_id=str(data.get("campaign", "")),
            suite=suite,
            architecture=str(data.get("architecture", "")),
            version=str(data.get("version", "")),
            verdict=str(data.get("verdict", "")),
            date=created,
        )
        for _id, suite, data, created in verdicts
        if data.get("campaign")
    ]
    return PackagePage(
        source=source,
        matrix=sorted(matrix.values(), key=lambda r: (r.suite, r.architecture)),
        as_target=targets,
    )


class HistoryRun(BaseModel):
    artifact_id: int
    date: dt.datetime
    version: str
    result: str
    exit_code: int | None
    duration_s: float | None
    trigger: Trigger
    side: str  # upload, new, reference
    tests: dict[str, str]  # test name → status
    reference_of: str | None = None


class HistoryPage(BaseModel):
    source: str
    suite: str
    architecture: str
    runs: list[HistoryRun]
    next_before: int | None = None  # the `before` of the next (older) page


def history_runs(db: Session, source: str, suite: str, arch: str, *, before: int, limit: int) -> HistoryPage:
    rows = db.execute(
        _HISTORY, {"source": source, "suite": suite, "arch": arch, "before": before, "limit": limit + 1}
    ).all()
    runs = [_history_run(*row) for row in rows[:limit]]
    more = len(rows) > limit
    return HistoryPage(
        source=source,
        suite=suite,
        architecture=arch,
        runs=runs,
        next_before=runs[-1].artifact_id if more and runs else None,
    )


def _history_run(
    rid: int, created: dt.datetime, workflow_id: str | None, data: dict[str, Any], reference_of: str | None
) -> HistoryRun:
    trigger = trigger_of(workflow_id)
    side = "reference" if reference_of else ("new" if trigger.kind == "campaign" else trigger.kind)
    tests = data.get("tests") or {}
    return HistoryRun(
        artifact_id=rid,
        date=created,
        version=str(data.get("version", "")),
        result=str(data.get("result", "")),
        exit_code=data.get("exit_code"),
        duration_s=data.get("duration_s"),
        trigger=trigger,
        side=side,
        tests={str(n): str(t.get("status", "")) for n, t in tests.items() if isinstance(t, dict)},
        reference_of=reference_of,
    )


def _human(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60}m {s % 60}s"


def debci_runs(page: HistoryPage) -> list[dict[str, Any]]:
    """The runs (newest first) in the shape of debci's history.json entries (its Job#as_json)."""
    runs = list(reversed(page.runs))  # oldest first, to carry previous status and last pass forward
    found: list[dict[str, Any]] = []
    previous: str | None = None
    last_pass: HistoryRun | None = None
    for run in runs:
        status = DEBCI_STATUS.get(TaskResult(run.result), "fail") if run.result in DEBCI_STATUS else "fail"
        if status == "pass":
            last_pass = run
        duration = run.duration_s or 0.0
        found.append(
            {
                "run_id": run.artifact_id,
                "trigger": run.trigger.campaign_id or run.trigger.workflow_id,
                "package": page.source,
                "arch": page.architecture,
                "suite": page.suite,
                "version": run.version,
                "date": run.date.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "status": status,
                "blame": [],
                "previous_status": previous,
                "duration_seconds": round(duration),
                "duration_human": _human(duration),
                "message": {
                    "pass": "Tests passed",
                    "fail": "Tests failed",
                    "neutral": "No tests in this package or all skipped",
                    "tmpfail": "Could not run tests due to a temporary failure",
                }[status],
                "last_pass_version": last_pass.version if last_pass else None,
                "last_pass_date": last_pass.date.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if last_pass
                else None,
            }
        )
        previous = status
    return list(reversed(found))
