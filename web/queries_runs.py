"""An upload run's page and a campaign's page: two or three statements each.

Campaign pages read verdict items as plain data, not as one campaign kind's model: a verdict's name, its
new and reference runs and their logs are shown whatever kind of campaign stored them (tests, rebuilds).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import Text

from models.campaign import Verdict
from models.vocabulary import ItemCategory

CAMPAIGN_PAGE = 100
# REGRESSION first, then the rest in the vocabulary's order; a verdict another kind adds comes after.
VERDICT_ORDER = [str(v) for v in Verdict]

_ARTIFACTS = text(
    """
    SELECT a.id, a.category, a.created_at, a.activity_id, a.data, a.expires_at,
           coalesce(array_agg(f.path ORDER BY f.path) FILTER (WHERE f.path IS NOT NULL), '{}')
    FROM artifact a LEFT JOIN file_in_artifact f ON f.artifact_id = a.id
    WHERE a.workflow_id = :wf
    GROUP BY a.id ORDER BY a.id
    """
)
_TASKS = text(
    "SELECT task_name, subject, context, worker, started_at, duration_s, result, data "
    "FROM task_history WHERE workflow_id = :wf ORDER BY started_at, id"
)
_VERDICTS = f"""
    SELECT DISTINCT ON (ci.name) ci.name, ci.collection_id, ci.data
    FROM collection_item ci
    WHERE ci.category = '{ItemCategory.QA_RESULT}' AND ci.data ->> 'campaign' = :campaign
    ORDER BY ci.name, ci.removed_at IS NULL DESC, ci.id DESC
"""
_COUNTS = text(f"SELECT v.data ->> 'verdict', count(*) FROM ({_VERDICTS}) v GROUP BY 1")
_ROWS = text(
    f"""
    SELECT c.name, v.data, n.data ->> 'version', r.data ->> 'version'
    FROM ({_VERDICTS}) v
    JOIN collection c ON c.id = v.collection_id
    LEFT JOIN artifact n ON n.id = (v.data ->> 'new_log_artifact_id')::bigint
    LEFT JOIN artifact r ON r.id = (v.data ->> 'reference_log_artifact_id')::bigint
    WHERE (CAST(:verdict AS text) IS NULL OR v.data ->> 'verdict' = :verdict)
    ORDER BY coalesce(array_position(CAST(:order AS text[]), v.data ->> 'verdict'), 1000),
             v.data ->> 'package', v.data ->> 'architecture'
    LIMIT :limit OFFSET :offset
    """
).bindparams(bindparam("order", type_=ARRAY(Text)))


class RunArtifact(BaseModel):
    id: int
    category: str
    created_at: dt.datetime
    activity_id: str | None
    data: dict[str, Any]
    expires_at: dt.datetime | None
    files: list[str]


class TaskRow(BaseModel):
    task_name: str
    subject: str
    context: str
    worker: str
    started_at: dt.datetime
    duration_s: float
    result: str
    attempt: int | None = None


class UploadRunPage(BaseModel):
    workflow_id: str
    artifacts: list[RunArtifact]
    tasks: list[TaskRow]


def upload_run(db: Session, workflow_id: str) -> UploadRunPage:
    artifacts = [
        RunArtifact(
            id=i, category=c, created_at=at, activity_id=act, data=data, expires_at=exp, files=list(files)
        )
        for i, c, at, act, data, exp, files in db.execute(_ARTIFACTS, {"wf": workflow_id})
    ]
    tasks = [
        TaskRow(
            task_name=name,
            subject=subject,
            context=context,
            worker=worker,
            started_at=started,
            duration_s=duration,
            result=result,
            attempt=(data or {}).get("attempt"),
        )
        for name, subject, context, worker, started, duration, result, data in db.execute(
            _TASKS, {"wf": workflow_id}
        )
    ]
    return UploadRunPage(workflow_id=workflow_id, artifacts=artifacts, tasks=tasks)


class VerdictRow(BaseModel):
    """One target of a campaign; fields a campaign kind does not store stay empty."""

    suite: str
    source: str
    architecture: str
    verdict: str
    version: str = ""  # the target's version
    new_version: str | None = None  # of the run with the trigger installed, from its log artifact
    reference_version: str | None = None
    new: str | None = None
    reference: str | None = None
    regressed_tests: list[str] = Field(default_factory=list)
    new_log_artifact_id: int | None = None
    reference_log_artifact_id: int | None = None
    attempts: int = 1
    cause: str | None = None

    @property
    def rerun(self) -> str:
        """What the re-run of the new side decided, when there was one."""
        if self.attempts < 2:
            return ""
        if self.verdict == Verdict.REGRESSION:
            return "confirmed by a re-run"
        if self.verdict == Verdict.FLAKY:
            return "cleared by a re-run (passed)"
        return f"{self.attempts} runs"


class CampaignPage(BaseModel):
    campaign_id: str
    counts: dict[str, int]
    total: int
    verdict_filter: str | None
    rows: list[VerdictRow]
    page: int
    pages: int


def _row(suite: str, data: dict[str, Any], new_version: str | None, ref_version: str | None) -> VerdictRow:
    def text_or_none(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    def id_or_none(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) else None

    return VerdictRow(
        suite=suite,
        source=str(data.get("source") or data.get("package") or ""),
        architecture=str(data.get("architecture", "")),
        verdict=str(data.get("verdict", "")),
        version=str(data.get("version", "")),
        new_version=new_version,
        reference_version=ref_version,
        new=text_or_none("new"),
        reference=text_or_none("reference"),
        regressed_tests=[str(t) for t in data.get("regressed_tests") or []],
        new_log_artifact_id=id_or_none("new_log_artifact_id"),
        reference_log_artifact_id=id_or_none("reference_log_artifact_id"),
        attempts=int(data.get("attempts") or 1),
        cause=text_or_none("cause"),
    )


def campaign_page(db: Session, campaign_id: str, *, verdict: str | None, page: int) -> CampaignPage:
    counts = {str(v): int(n) for v, n in db.execute(_COUNTS, {"campaign": campaign_id})}
    ordered = dict(sorted(counts.items(), key=lambda kv: _rank(kv[0])))
    total = sum(counts.values())
    shown = counts.get(verdict, 0) if verdict else total
    pages = max(1, -(-shown // CAMPAIGN_PAGE))
    rows = []
    if shown:
        rows = [
            _row(suite, data, nv, rv)
            for suite, data, nv, rv in db.execute(
                _ROWS,
                {
                    "campaign": campaign_id,
                    "verdict": verdict,
                    "order": VERDICT_ORDER,
                    "limit": CAMPAIGN_PAGE,
                    "offset": (page - 1) * CAMPAIGN_PAGE,
                },
            )
        ]
    return CampaignPage(
        campaign_id=campaign_id,
        counts=ordered,
        total=total,
        verdict_filter=verdict,
        rows=rows,
        page=page,
        pages=pages,
    )


def _rank(verdict: str) -> int:
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)
