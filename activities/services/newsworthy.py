"""Newsworthy results and confirmed regressions: what feeds list and webhooks deliver.

A result is newsworthy, as debci defines it, when it differs from the previous result of its series:
the same task, package, suite and architecture (and, for campaign runs, the reference side; a campaign's
new-side runs are judged by its verdicts instead). The first result of a series is news too.
Infrastructure errors are no result (they say nothing about the package): a series pass, error, pass
has no news. A confirmed regression is a campaign verdict REGRESSION, stored after its re-run.

Task history keeps the newest `keep` rows of a series (plus its last success and failure), so the row
before an older one may have been pruned: a row is judged only when its predecessor is certainly still
there (fewer than `keep` newer rows, or a series that was never pruned). Old news thus leaves the feeds
as history is pruned, and nothing is ever claimed as news that was not.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger

from models.notify_payloads import EventType, IdGap, NewsCursor, NewsEvent
from models.vocabulary import ItemCategory, TaskName, TaskResult

RESULT_TASKS = (TaskName.BUILD, TaskName.LINTIAN, TaskName.AUTOPKGTEST)
RESULTS = (TaskResult.SUCCESS, TaskResult.FAILURE, TaskResult.SKIPPED)
# An id missing below the cursor may belong to a transaction still open: looked at again this long.
GAP_WAIT = dt.timedelta(minutes=10)
MAX_GAPS = 1000

_SERIES = (
    f"h.task_name IN ({', '.join(repr(str(t)) for t in RESULT_TASKS)}) "
    f"AND h.result IN ({', '.join(repr(str(r)) for r in RESULTS)}) AND h.context NOT LIKE '%/new'"
)
_PARTITION = "PARTITION BY h.task_name, h.subject, h.context"
_NEWS = "r.previous IS DISTINCT FROM r.result AND (r.newest < :keep OR r.total < :keep)"


def _ranked(keys: str) -> str:
    """Every result of the series `keys` selects, with the one before it (set-based: one window)."""
    return f"""
        SELECT h.id, h.task_name, h.subject, h.context, h.started_at, h.result, h.workflow_id,
               h.data ->> 'version' AS version,
               lag(h.result) OVER (series ORDER BY h.id) AS previous,
               row_number() OVER (series ORDER BY h.id DESC) AS newest,
               count(*) OVER series AS total
        FROM task_history h
        WHERE {_SERIES} {keys}
        WINDOW series AS ({_PARTITION})
    """


_RESULTS_NEWEST = f"SELECT r.* FROM ({_ranked('')}) r WHERE {_NEWS} ORDER BY r.id DESC LIMIT :limit"
# Along ix_task_history_key_started: task_name IN (…) and subject lead the index.
_PACKAGE_RESULTS_NEWEST = (
    f"SELECT r.* FROM ({_ranked('AND h.subject = :package')}) r WHERE {_NEWS} ORDER BY r.id DESC LIMIT :limit"
)
# The notifier's rows: only the series they belong to are ranked.
_FRESH = "((id > :after AND id <= :high) OR id = ANY(:extra))"
_RESULTS_FRESH = text(
    f"""
    SELECT r.* FROM ({
        _ranked(
            "AND (h.task_name, h.subject, h.context) IN "
            f"(SELECT task_name, subject, context FROM task_history WHERE {_FRESH})"
        )
    }) r
    WHERE {_FRESH.replace("id", "r.id")} AND {_NEWS} ORDER BY r.id
    """
).bindparams(bindparam("extra", type_=ARRAY(BigInteger)))

_REGRESSION = (
    f"ci.category = '{ItemCategory.QA_RESULT}' AND (ci.data ->> 'verdict') = 'REGRESSION' "
    "AND (ci.data ->> 'campaign') IS NOT NULL"
)
_REGRESSION_COLUMNS = "ci.id, ci.created_at, c.name AS suite, ci.data"
_REGRESSIONS_FROM = "FROM collection_item ci JOIN collection c ON c.id = ci.collection_id"
# Along ix_collection_item_regression (a partial index: only REGRESSION verdicts).
_REGRESSIONS_NEWEST = (
    f"SELECT {_REGRESSION_COLUMNS} {_REGRESSIONS_FROM} WHERE {_REGRESSION} {{package}} "
    "ORDER BY ci.id DESC LIMIT :limit"
)
_REGRESSIONS_FRESH = text(
    f"SELECT {_REGRESSION_COLUMNS} {_REGRESSIONS_FROM} WHERE {_REGRESSION} "
    f"AND {_FRESH.replace('id', 'ci.id')} ORDER BY ci.id"
).bindparams(bindparam("extra", type_=ARRAY(BigInteger)))

_SCAN = {
    "history": text("SELECT id FROM task_history WHERE id > :after ORDER BY id LIMIT :limit"),
    "item": text("SELECT id FROM collection_item WHERE id > :after ORDER BY id LIMIT :limit"),
}
_IN_GAPS = {
    table: text(
        f"SELECT t.id FROM {table} t JOIN unnest(:lows, :highs) AS g(low, high) "
        "ON t.id BETWEEN g.low AND g.high"
    ).bindparams(bindparam("lows", type_=ARRAY(BigInteger)), bindparam("highs", type_=ARRAY(BigInteger)))
    for table in ("task_history", "collection_item")
}
_MAX_IDS = text(
    "SELECT (SELECT coalesce(max(id), 0) FROM task_history), "
    "(SELECT coalesce(max(id), 0) FROM collection_item)"
)


def _result_event(row: Any) -> NewsEvent:
    suite, _, rest = row.context.partition("/")
    architecture, _, side = rest.partition("/")
    return NewsEvent(
        id=f"result/{row.id}",
        type=EventType.RESULT,
        time=row.started_at,
        package=row.subject,
        version=row.version,
        suite=suite,
        architecture=architecture,
        task=row.task_name,
        result=row.result,
        previous_result=row.previous,
        context=side,
        workflow_id=row.workflow_id,
    )


def _regression_event(row: Any) -> NewsEvent:
    data = row.data
    return NewsEvent(
        id=f"regression/{row.id}",
        type=EventType.REGRESSION,
        time=row.created_at,
        package=str(data.get("package") or data.get("source")),
        version=data.get("version"),
        suite=row.suite,
        architecture=str(data.get("architecture", "")),
        task="campaign",
        result=str(data.get("new", "")),
        previous_result=data.get("reference"),
        campaign=data.get("campaign"),
        regressed_tests=list(data.get("regressed_tests") or []),
        new_log_artifact_id=data.get("new_log_artifact_id"),
        reference_log_artifact_id=data.get("reference_log_artifact_id"),
    )


def newest_news(
    session: Session, *, keep: int, package: str | None = None, limit: int = 50
) -> list[NewsEvent]:
    """The newest `limit` newsworthy results and confirmed regressions (of one package), newest first:
    two statements, each bounded by `limit`."""
    params: dict[str, Any] = {"keep": keep, "limit": limit, "package": package}
    results = session.execute(text(_PACKAGE_RESULTS_NEWEST if package else _RESULTS_NEWEST), params)
    regressions = session.execute(
        text(_REGRESSIONS_NEWEST.format(package="AND (ci.data ->> 'package') = :package" if package else "")),
        params,
    )
    events = [_result_event(r) for r in results] + [_regression_event(r) for r in regressions]
    return sorted(events, key=lambda e: e.time, reverse=True)[:limit]


def start_cursor(session: Session) -> NewsCursor:
    """A cursor at what is stored now: the notifier's first poll sends nothing that happened before."""
    history_id, item_id = session.execute(_MAX_IDS).one()
    return NewsCursor(history_id=int(history_id), item_id=int(item_id))


def _advance(
    session: Session, source: str, after: int, gaps: list[IdGap], limit: int, now: dt.datetime
) -> tuple[int, list[int], list[IdGap], bool]:
    """Look at up to `limit` ids above `after` and into the open gaps below it.

    Returns the new mark, the ids found in old gaps, the gaps still open, and whether more ids wait.
    """
    table = "task_history" if source == "history" else "collection_item"
    ids = list(session.scalars(_SCAN[source], {"after": after, "limit": limit}))
    gaps = [g for g in gaps if g.until > now]
    found: list[int] = []
    if gaps:
        found = sorted(
            session.scalars(_IN_GAPS[table], {"lows": [g.low for g in gaps], "highs": [g.high for g in gaps]})
        )
    still_open: list[IdGap] = []
    for gap in gaps:
        low = gap.low
        for taken in (i for i in found if gap.low <= i <= gap.high):
            if taken > low:
                still_open.append(IdGap(low=low, high=taken - 1, until=gap.until))
            low = taken + 1
        if low <= gap.high:
            still_open.append(IdGap(low=low, high=gap.high, until=gap.until))
    previous = after
    for i in ids:
        if i > previous + 1:
            still_open.append(IdGap(low=previous + 1, high=i - 1, until=now + GAP_WAIT))
        previous = i
    return (ids[-1] if ids else after), found, still_open[-MAX_GAPS:], len(ids) == limit


def news_since(
    session: Session, cursor: NewsCursor, *, keep: int, max_rows: int
) -> tuple[list[NewsEvent], NewsCursor, bool]:
    """The news recorded since `cursor`, oldest first, and the cursor after it (one read transaction)."""
    now = dt.datetime.now(dt.UTC)
    history_high, history_found, history_gaps, more_history = _advance(
        session, "history", cursor.history_id, cursor.history_gaps, max_rows, now
    )
    item_high, item_found, item_gaps, more_items = _advance(
        session, "item", cursor.item_id, cursor.item_gaps, max_rows, now
    )
    results = session.execute(
        _RESULTS_FRESH,
        {"after": cursor.history_id, "high": history_high, "extra": history_found, "keep": keep},
    )
    regressions = session.execute(
        _REGRESSIONS_FRESH, {"after": cursor.item_id, "high": item_high, "extra": item_found}
    )
    events = [_result_event(r) for r in results] + [_regression_event(r) for r in regressions]
    after = NewsCursor(
        history_id=history_high, item_id=item_high, history_gaps=history_gaps, item_gaps=item_gaps
    )
    return events, after, more_history or more_items
