"""PostgreSQL's own statistics for operators: write volume per table since the last reset, lock waits."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy import Engine, text

TABLES = text(
    """
    SELECT relname AS table, n_tup_ins AS inserts, n_tup_upd AS updates, n_tup_hot_upd AS hot_updates,
           n_tup_del AS deletes, n_live_tup AS live, n_dead_tup AS dead
    FROM pg_stat_user_tables
    ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC, relname
    """
)
DATABASE = text(
    "SELECT stats_reset, deadlocks, xact_commit, xact_rollback FROM pg_stat_database "
    "WHERE datname = current_database()"
)
# Who waits for a lock, and who holds it (pg_blocking_pids); the query texts are cut short.
LOCK_WAITS = text(
    """
    SELECT w.pid, pg_blocking_pids(w.pid) AS blocked_by,
           w.wait_event_type || ':' || w.wait_event AS waits_for,
           extract(epoch FROM now() - w.state_change) AS seconds, left(w.query, 160) AS query,
           coalesce((SELECT string_agg(b.pid || ' ' || b.state || ': ' || left(b.query, 100), ' | ')
                     FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(w.pid))), '') AS blockers
    FROM pg_stat_activity w
    WHERE cardinality(pg_blocking_pids(w.pid)) > 0
    ORDER BY w.state_change
    """
)


class TableStats(BaseModel):
    table: str
    inserts: int
    updates: int
    hot_updates: int
    deletes: int
    live: int
    dead: int

    @property
    def hot_ratio(self) -> float | None:
        """Share of updates that were HOT (no index entry written); None without updates."""
        return self.hot_updates / self.updates if self.updates else None


class LockWait(BaseModel):
    pid: int
    blocked_by: list[int]
    waits_for: str | None
    seconds: float
    query: str
    blockers: str


class DatabaseStats(BaseModel):
    since: dt.datetime | None
    deadlocks: int
    commits: int
    rollbacks: int
    tables: list[TableStats]
    lock_waits: list[LockWait]


def database_stats(engine: Engine) -> DatabaseStats:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        db = conn.execute(DATABASE).one()
        return DatabaseStats(
            since=db.stats_reset,
            deadlocks=db.deadlocks,
            commits=db.xact_commit,
            rollbacks=db.xact_rollback,
            tables=[TableStats.model_validate(row._asdict()) for row in conn.execute(TABLES)],
            lock_waits=[
                LockWait.model_validate({**row._asdict(), "seconds": float(row.seconds or 0)})
                for row in conn.execute(LOCK_WAITS)
            ],
        )


def reset_stats(engine: Engine) -> None:
    """Zero the counters of this database (pg_stat_reset); `since` becomes now."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_reset()"))
        conn.commit()
