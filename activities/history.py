"""Task history: one row per finished task, with its duration and resource use."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from activities.process import ProcessOutcome
from models.tables import TaskHistory

WORKER_IDENTITY = f"{socket.gethostname()}:{os.getpid()}"


def record_task(
    sessions: sessionmaker[Session],
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
    with sessions.begin() as session:
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
