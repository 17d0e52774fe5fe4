"""The results of debci jobs as britney2 reads them: a requester's since `since` (`GET /api/v1/test`) and
every public one (the results file of ADT_SWIFT_URL). The jobs themselves: debci_jobs.py."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import text

from activities.services.debci_jobs import Context
from models.debci import Requester

# How far behind the newest row `until` stays: a job's row is stamped when its transaction starts and
# seen when it commits; a poll between the two must not move past it (a result may come twice; none
# is skipped).
SETTLE_S = 10


def _since(since: int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(since or 0, dt.UTC)


# The caller's jobs decided or changed since, and the jobs it asked for since (a request may join a job
# decided before it): two indexed reads.
_MINE = text(
    "SELECT j.id, j.suite, j.architecture, j.package, j.version, j.trigger, j.status, "
    "greatest(j.updated_at, r.created_at) AS updated_at, j.pins, j.is_private, j.exit_code, j.duration_s "
    "FROM debci_job j JOIN debci_request r ON r.job_id = j.id AND r.requester_id = :requester "
    "WHERE j.id IN (SELECT id FROM debci_job WHERE updated_at >= :since "
    "UNION SELECT job_id FROM debci_request WHERE requester_id = :requester AND created_at >= :since) "
    "ORDER BY 8, j.id"
)
_PUBLIC = text(
    "SELECT j.id, j.suite, j.architecture, j.package, j.version, j.trigger, j.status, j.updated_at, "
    "j.pins, j.is_private, j.exit_code, j.duration_s FROM debci_job j "
    "WHERE j.updated_at >= :since AND (NOT j.is_private OR EXISTS (SELECT 1 FROM debci_request r "
    "WHERE r.job_id = j.id AND r.requester_id = :requester)) ORDER BY j.updated_at, j.id"
)


def _result(row: Any) -> dict[str, Any]:
    return {
        "run_id": row.id,
        "suite": row.suite,
        "arch": row.architecture,
        "package": row.package,
        "version": row.version,
        "trigger": row.trigger,
        "status": row.status,
        "pin_packages": row.pins,
        "is_private": row.is_private,
        "exit_code": row.exit_code,
        "duration_seconds": round(row.duration_s) if row.duration_s is not None else None,
        "updated_at": debci_time(row.updated_at),
    }


def debci_time(moment: dt.datetime) -> str:
    """debci's (Rails') timestamp, 2024-05-29T16:33:40.123Z: britney2 drops the last five characters and
    parses the rest as %Y-%m-%dT%H:%M:%S."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _listing(rows: list[Any], since: int | None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).timestamp()
    newest = max((r.updated_at.timestamp() for r in rows), default=float(since or 0))
    until = max(since or 0, math.floor(min(newest, now - SETTLE_S)))
    return {"until": int(until), "results": [_result(r) for r in rows]}


def results_since(context: Context, requester: Requester, since: int | None) -> dict[str, Any]:
    """debci's `GET /api/v1/test`: the caller's requests updated since `since` (pending ones with status
    null); `until` is the next `since` (a result may come again, none is skipped)."""
    with context.sessions() as session:
        rows = list(session.execute(_MINE, {"requester": requester.id, "since": _since(since)}))
    return _listing(rows, since)


def public_results(context: Context, since: int | None, requester: Requester | None) -> dict[str, Any]:
    """Every job updated since `since` (the results file britney2 reads through ADT_SWIFT_URL); private
    ones only for the key that asked for them."""
    with context.sessions() as session:
        rows = list(
            session.execute(_PUBLIC, {"since": _since(since), "requester": requester.id if requester else -1})
        )
    return _listing(rows, since)
