"""Task history: one row per finished task, with its duration and resource use, pruned as it is written."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.orm import Session, sessionmaker

from activities.metrics import NO_METRICS, Metrics
from activities.tools.process import ProcessOutcome
from models.tables import TaskHistory

WORKER_IDENTITY = f"{socket.gethostname()}:{os.getpid()}"
DEFAULT_KEEP_NEWEST = 5

# Per (task_name, subject, context): the newest `keep` rows, the last success and the last failure stay.
# Everything else of that key goes, right after an insert, so a key holds at most keep + 3 rows and this
# reads those through ix_task_history_key_started: the cost of an insert never grows with the history.
# Rows another transaction is deleting are skipped, not waited for (two inserts of one key never block).
PRUNE_KEY = text(
    """
    DELETE FROM task_history WHERE id IN (
        SELECT id FROM task_history WHERE id = ANY(ARRAY(
            SELECT id FROM (
                SELECT id, result,
                       row_number() OVER (ORDER BY started_at DESC, id DESC) AS newest,
                       row_number() OVER (PARTITION BY result ORDER BY started_at DESC, id DESC) AS of_result
                FROM task_history
                WHERE task_name = :task_name AND subject = :subject AND context = :context
            ) ranked
            WHERE newest > :keep AND NOT (result IN ('success', 'failure') AND of_result = 1)
        ))
        FOR UPDATE SKIP LOCKED
    )
    """
)


def prune_task_history(session: Session, *, task_name: str, subject: str, context: str, keep: int) -> int:
    """Delete the rows of one key beyond its keep-set; returns how many went (0 in most calls)."""
    params = {"task_name": task_name, "subject": subject, "context": context, "keep": keep}
    return int(session.execute(PRUNE_KEY, params).rowcount)  # type: ignore[attr-defined]


# The same rule for every key a batch of rows touched, in one statement.
PRUNE_KEYS = text(
    """
    DELETE FROM task_history WHERE id IN (
        SELECT id FROM task_history WHERE id = ANY(ARRAY(
            SELECT id FROM (
                SELECT h.id, h.result,
                       row_number() OVER (PARTITION BY h.task_name, h.subject, h.context
                                          ORDER BY h.started_at DESC, h.id DESC) AS newest,
                       row_number() OVER (PARTITION BY h.task_name, h.subject, h.context, h.result
                                          ORDER BY h.started_at DESC, h.id DESC) AS of_result
                FROM task_history h
                JOIN unnest(CAST(:tasks AS text[]), CAST(:subjects AS text[]), CAST(:contexts AS text[]))
                     AS k(task_name, subject, context) USING (task_name, subject, context)
            ) ranked
            WHERE newest > :keep AND NOT (result IN ('success', 'failure') AND of_result = 1)
        ))
        FOR UPDATE SKIP LOCKED
    )
    """
)


class TaskHistoryWriter:
    """Writes task-history rows and prunes their keys to the newest `keep_newest` (plus the last success
    and failure); built once by the composition root from `Settings.task_history_keep`."""

    def __init__(self, *, keep_newest: int = DEFAULT_KEEP_NEWEST, metrics: Metrics = NO_METRICS) -> None:
        if keep_newest < 1:
            raise ValueError("task history must keep at least one entry per key")
        self.keep_newest = keep_newest
        self.metrics = metrics

    def add(
        self,
        session: Session,
        *,
        task_name: str,
        subject: str,
        context: str,
        workflow_id: str | None,
        started_at: dt.datetime,
        duration_s: float,
        result: str,
        usage: list[ProcessOutcome],
        data: dict[str, Any] | None = None,
    ) -> None:
        """Insert one row and prune its key, inside the caller's transaction (e.g. with the task's artifacts,
        so that a task's outputs and its history row are stored together or not at all)."""
        session.add(
            TaskHistory(
                task_name=task_name,
                subject=subject,
                context=context,
                worker=WORKER_IDENTITY,
                workflow_id=workflow_id,
                started_at=started_at,
                duration_s=duration_s,
                result=result,
                cpu_user_s=sum(u.cpu_user_s for u in usage) if usage else None,
                cpu_system_s=sum(u.cpu_system_s for u in usage) if usage else None,
                max_rss_kb=max(u.max_rss_kb for u in usage) if usage else None,
                data=data or {},
            )
        )
        session.flush()
        prune_task_history(
            session, task_name=task_name, subject=subject, context=context, keep=self.keep_newest
        )
        self.metrics.task_finished(task_name, result, duration_s)

    def record(self, sessions: sessionmaker[Session], rows: list[dict[str, Any]]) -> None:
        """Insert many finished tasks (TaskHistory column values) and prune the keys they touched."""
        if not rows:
            return
        keys = sorted({(r["task_name"], r["subject"], r["context"]) for r in rows})
        with sessions.begin() as session:
            session.execute(insert(TaskHistory), rows)
            session.execute(
                PRUNE_KEYS,
                {
                    "tasks": [k[0] for k in keys],
                    "subjects": [k[1] for k in keys],
                    "contexts": [k[2] for k in keys],
                    "keep": self.keep_newest,
                },
            )
        for row in rows:
            self.metrics.task_finished(row["task_name"], row["result"], row["duration_s"])
