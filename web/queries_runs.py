"""An upload run's page and a campaign's page: two or three statements each.

Campaign pages read verdict items as plain data, not as one campaign kind's model: a verdict's name, its
new and reference runs and their logs are shown whatever kind of campaign stored them (tests, rebuilds).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from models.campaign import Verdict
from models.vocabulary import ItemCategory
from web.files import public_artifact

CAMPAIGN_PAGE = 100
# REGRESSION first, then the rest in the vocabulary's order; a verdict another kind adds comes after.
VERDICT_ORDER = [str(v) for v in Verdict]

_ARTIFACTS = text(
    f"""
    SELECT a.id, a.category, a.created_at, a.activity_id, a.data, a.expires_at,
           coalesce(array_agg(f.path ORDER BY f.path) FILTER (WHERE f.path IS NOT NULL), '{{}}')
    FROM artifact a LEFT JOIN file_in_artifact f ON f.artifact_id = a.id
    WHERE a.workflow_id = :wf AND {public_artifact()}
    GROUP BY a.id ORDER BY a.id
    """
)
_TASKS = text(
    "SELECT task_name, subject, context, worker, started_at, duration_s, result, data "
    "FROM task_history WHERE workflow_id = :wf ORDER BY started_at, id"
)
# A campaign stores one item per target and architecture (an upsert by name) and retention only ever
# removes items of finished campaigns, so the items of a campaign, removed ones too, are its verdicts.
_OF_CAMPAIGN = f"ci.category = '{ItemCategory.QA_RESULT}' AND (ci.data ->> 'campaign') = :campaign"
_COUNTS = text(
    f"SELECT ci.data ->> 'verdict', count(*) FROM collection_item ci WHERE {_OF_CAMPAIGN} GROUP BY 1"
)
# One verdict's rows in page order, along ix_collection_item_campaign_verdict.
_PART = f"""
    (SELECT {{i}} AS part, ci.collection_id, ci.data FROM collection_item ci
     WHERE {_OF_CAMPAIGN} AND (ci.data ->> 'verdict') = :verdict_{{i}}
     ORDER BY (ci.data ->> 'campaign'), (ci.data ->> 'verdict'), (ci.data ->> 'package'),
              (ci.data ->> 'architecture')
     LIMIT :limit_{{i}} OFFSET :offset_{{i}})
"""


def _rows_statement(parts: int) -> TextClause:
    """The page's rows from `parts` verdict groups (a page spans one, sometimes a few), with the suite
    and the versions of both runs, in one statement."""
    union = " UNION ALL ".join(_PART.format(i=i) for i in range(parts))
    return text(
        f"""
        SELECT c.name, v.data, n.data ->> 'version', r.data ->> 'version'
        FROM ({union}) v
        JOIN collection c ON c.id = v.collection_id
        LEFT JOIN artifact n ON n.id = (v.data ->> 'new_log_artifact_id')::bigint
        LEFT JOIN artifact r ON r.id = (v.data ->> 'reference_log_artifact_id')::bigint
        ORDER BY v.part, v.data ->> 'package', v.data ->> 'architecture'
        """
    )


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


def page_groups(
    counts: dict[str, int], verdict: str | None, page: int, size: int = CAMPAIGN_PAGE
) -> list[tuple[str, int, int]]:
    """(verdict, limit, offset) of each verdict group the page spans, verdicts in display order."""
    skip, left, found = (page - 1) * size, size, []
    for name, count in counts.items():
        if verdict is not None and name != verdict:
            continue
        if skip >= count:
            skip -= count
            continue
        take = min(count - skip, left)
        found.append((name, take, skip))
        skip, left = 0, left - take
        if not left:
            break
    return found


def campaign_counts(db: Session, campaign_id: str) -> dict[str, int]:
    """Verdict → targets, in display order (one statement over every item of the campaign)."""
    counts = {str(v): int(n) for v, n in db.execute(_COUNTS, {"campaign": campaign_id})}
    return dict(sorted(counts.items(), key=lambda kv: _rank(kv[0])))


def campaign_page(
    db: Session, campaign_id: str, *, counts: dict[str, int], verdict: str | None, page: int
) -> CampaignPage:
    """A page of verdicts given the campaign's `counts` (campaign_counts, which a caller may cache)."""
    ordered = counts
    total = sum(counts.values())
    shown = counts.get(verdict, 0) if verdict else total
    groups = page_groups(ordered, verdict, page)
    params: dict[str, Any] = {"campaign": campaign_id}
    for i, (name, limit, offset) in enumerate(groups):
        params |= {f"verdict_{i}": name, f"limit_{i}": limit, f"offset_{i}": offset}
    rows = [_row(*row) for row in db.execute(_rows_statement(len(groups)), params)] if groups else []
    return CampaignPage(
        campaign_id=campaign_id,
        counts=ordered,
        total=total,
        verdict_filter=verdict,
        rows=rows,
        page=page,
        pages=max(1, -(-shown // CAMPAIGN_PAGE)),
    )


def _rank(verdict: str) -> int:
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)
