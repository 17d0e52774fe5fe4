"""`debflow expire --dry-run`: what an expiry run would remove and, for what it keeps, why.

Read-only: one READ ONLY transaction, no locks taken, nothing written. Running workflows are those the
last expiry run recorded (`running_workflow`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from itertools import groupby
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from activities.storage import retention as r
from activities.storage.expiry import BEGINNING
from models.expiry_payloads import ExpiryPlan, PlannedRow, RetentionPolicy

HISTORY_BEYOND_KEEP = text(
    """
    SELECT count(*) FROM (
        SELECT result,
               row_number() OVER (PARTITION BY task_name, subject, context
                                  ORDER BY started_at DESC, id DESC) AS newest,
               row_number() OVER (PARTITION BY task_name, subject, context, result
                                  ORDER BY started_at DESC, id DESC) AS of_result
        FROM task_history
    ) ranked
    WHERE newest > :keep AND NOT (result IN ('success', 'failure') AND of_result = 1)
    """
)
ITEMS_DUE = text(
    f"""
    SELECT ci.id, ci.name, c.category, c.name AS collection,
           ci.removed_at <= CAST(:now AS timestamptz) - {r.ITEM_PERIOD} AS due
    FROM collection_item ci JOIN collection c ON c.id = ci.collection_id
    WHERE ci.removed_at IS NOT NULL
      AND ci.removed_at <= CAST(:now AS timestamptz)
          - make_interval(days => coalesce(c.full_history_retention_days, :full_days))
    ORDER BY ci.removed_at, ci.id
    """
)
REASONS = r.id_arrays(
    text(
        """
        SELECT a.id, a.category, a.expires_at, a.workflow_id,
               EXISTS (SELECT 1 FROM running_workflow w WHERE w.workflow_id = a.workflow_id) AS by_workflow,
               (SELECT c.category || ' ' || c.name || ', item ' || ci.name
                       || CASE WHEN ci.removed_at IS NULL THEN ''
                               ELSE ' (removed ' || to_char(ci.removed_at, 'YYYY-MM-DD')
                                    || ', within its full-history period)' END
                FROM collection_item ci JOIN collection c ON c.id = ci.collection_id
                WHERE ci.artifact_id = a.id AND c.retains_artifacts
                  AND (ci.removed_at IS NULL OR ci.removed_at > CAST(:now AS timestamptz)
                       - make_interval(days => coalesce(c.full_history_retention_days, :full_days)))
                ORDER BY ci.removed_at NULLS FIRST, ci.id LIMIT 1) AS item
        FROM artifact a WHERE a.id = ANY(:ids)
        """
    ),
    "ids",
)


def _reason(row: Any, now: dt.datetime) -> tuple[str, str]:
    """(kind, sentence) of an artifact kept by itself."""
    if row.item:
        return "retaining collection", f"in retaining collection {row.item}"
    if row.by_workflow:
        return "running workflow", f"made by running workflow {row.workflow_id}"
    if row.expires_at is None or row.expires_at > now:
        until = f"until {row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "never expires"
        return "not expired", f"not expired ({until})"
    return "kept", "kept"


def _note(rows: list[PlannedRow], row: PlannedRow, limit: int) -> None:
    """Append `row` unless its kind already has `limit` rows in the list."""
    if sum(1 for listed in rows if listed.kind == row.kind) < limit:
        rows.append(row)


def plan_expiry(
    sessions: sessionmaker[Session],
    policy: RetentionPolicy,
    *,
    now: dt.datetime | None = None,
    history_keep: int = 5,
    limit: int = 20,
) -> ExpiryPlan:
    """What expiry at `now` would do; at most `limit` rows of each list are described."""
    plan = ExpiryPlan(now=now or dt.datetime.now(dt.UTC))
    with sessions() as session:
        session.execute(text("SET TRANSACTION READ ONLY"))
        r.set_timeouts(session, policy.model_copy(update={"statement_timeout_s": 600}))
        plan.running_workflows_recorded = session.execute(
            text("SELECT count(*) FROM running_workflow")
        ).scalar_one()
        plan.history_rows_beyond_keep = session.execute(
            HISTORY_BEYOND_KEEP, {"keep": history_keep}
        ).scalar_one()
        _plan_qa_results(session, plan, policy, limit)
        _plan_items(session, plan, policy, limit)
        _plan_artifacts(session, plan, policy, limit)
        session.rollback()
    return plan


def _plan_qa_results(session: Session, plan: ExpiryPlan, policy: RetentionPolicy, limit: int) -> None:
    for cid in session.scalars(r.QA_COLLECTIONS, {"from_id": 0}).all():
        rows = session.execute(r.qa_page(after_key=False), {"cid": cid, "limit": 2**62}).all()
        for _, group in groupby(rows, key=lambda row: tuple(row[2:5])):
            for row in list(group)[: -policy.qa_results_keep]:
                what = f"QA result {row.name} (collection {cid})"
                if row.live:
                    plan.qa_results_kept_live += 1
                    why = "owned by a running workflow"
                    _note(plan.keep, PlannedRow(kind="qa-result", id=row.id, what=what, why=why), limit)
                else:
                    plan.qa_results_to_remove += 1
                    planned = PlannedRow(kind="qa-result", id=row.id, what=what, why="soft-remove")
                    _note(plan.remove, planned, limit)


def _plan_items(session: Session, plan: ExpiryPlan, policy: RetentionPolicy, limit: int) -> None:
    values = {
        "now": plan.now,
        "full_days": policy.removed_item_full_history_days,
        "metadata_days": policy.removed_item_metadata_days,
    }
    for row in session.execute(ITEMS_DUE, values):
        if not row.due:
            plan.items_metadata_only += 1
            continue
        plan.items_to_delete += 1
        what = f"removed item {row.name} of {row.category} {row.collection}"
        _note(plan.remove, PlannedRow(kind="collection-item", id=row.id, what=what, why="delete"), limit)


def _plan_artifacts(session: Session, plan: ExpiryPlan, policy: RetentionPolicy, limit: int) -> None:
    values = {"now": plan.now, "full_days": policy.removed_item_full_history_days}
    reasons: Counter[str] = Counter()
    after_at, after_id = BEGINNING, 0
    while True:
        candidates = session.execute(
            r.CANDIDATES, {"now": plan.now, "after_at": after_at, "after_id": after_id, "limit": 1000}
        ).all()
        if not candidates:
            break
        after_at, after_id = candidates[-1].expires_at, candidates[-1].id
        nodes: dict[int, list[int]] = {}
        kept_nodes: set[int] = set()
        for origin, node, kept in session.execute(r.CLOSURE, {**values, "ids": [c.id for c in candidates]}):
            nodes.setdefault(origin, []).append(node)
            if kept:
                kept_nodes.add(node)
        explained = {
            row.id: row
            for row in session.execute(REASONS, {**values, "ids": sorted(kept_nodes | set(nodes))})
        }
        for candidate in candidates:
            plan.artifacts_expired += 1
            row = explained[candidate.id]
            what = f"artifact {candidate.id} {row.category} (expired {candidate.expires_at:%Y-%m-%d %H:%M})"
            roots = sorted(n for n in nodes.get(candidate.id, []) if n in kept_nodes)
            if not roots:
                plan.artifacts_to_delete += 1
                _note(
                    plan.remove, PlannedRow(kind="artifact", id=candidate.id, what=what, why="delete"), limit
                )
                continue
            plan.artifacts_kept += 1
            if candidate.id in kept_nodes:
                kind, why = _reason(row, plan.now)
            else:
                kind = "reachable from a kept artifact"
                why = f"reachable from artifact {roots[0]}, {_reason(explained[roots[0]], plan.now)[1]}"
            reasons[kind] += 1
            _note(plan.keep, PlannedRow(kind="artifact", id=candidate.id, what=what, why=why), limit)
    plan.kept_reasons = dict(reasons)
