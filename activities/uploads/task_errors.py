"""Task-history rows for upload tasks that errored: tries exhausted, no worker, a timeout.

A tool activity writes its own row when it returns (success or failure); an activity that errored wrote
none, so the workflow, which saw the error, records it here. `debflow status` counts these rows as
infrastructure errors; timeouts from history leave them out (an error may have been cut short).
"""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.storage.history import TaskHistoryWriter
from models.payloads import TaskErrorInput
from models.tables import TaskHistory
from models.vocabulary import ActivityName, TaskResult

MESSAGE_CHARS = 2000  # a message is a line or a log tail, not a log


class TaskErrors:
    """The `record_task_error` activity."""

    def __init__(self, *, sessions: sessionmaker[Session], history: TaskHistoryWriter) -> None:
        self.sessions = sessions
        self.history = history

    @activity.defn(name=ActivityName.RECORD_TASK_ERROR)
    def record_task_error(self, params: TaskErrorInput) -> None:
        with self.sessions.begin() as session:
            # A retry after a commit whose answer was lost finds its row: still one row per error.
            recorded = session.scalar(
                select(
                    exists().where(
                        TaskHistory.workflow_id == params.workflow_id,
                        TaskHistory.task_name == params.task_name,
                        TaskHistory.context == params.context,
                        TaskHistory.started_at == params.started_at,
                    )
                )
            )
            if recorded:
                return
            self.history.add(
                session,
                task_name=params.task_name,
                subject=params.subject,
                context=params.context,
                workflow_id=params.workflow_id,
                started_at=params.started_at,
                duration_s=params.duration_s,
                result=TaskResult.ERROR,
                usage=[],
                data={"message": params.message[:MESSAGE_CHARS], "tries": params.tries},
            )
