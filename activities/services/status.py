"""The database's part of `debflow status`: its health and the last hour's task outcomes."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import Engine, text

from activities.storage.db_stats import database_stats
from models.vocabulary import TaskName


class FailureRate(BaseModel):
    """Finished tasks of the last hour by outcome: a package's own failures are not incidents."""

    tasks: int = 0
    package_failures: int = 0
    infrastructure_errors: int = 0

    @property
    def infrastructure_error_rate(self) -> float:
        return self.infrastructure_errors / self.tasks if self.tasks else 0.0


class DatabaseHealth(BaseModel):
    connections: int
    lock_waits: int
    deadlocks: int
    inserts: int
    updates: int
    deletes: int
    dead_tuples: int


# Tasks only: the rows of making or waiting for an environment (TaskName.ENVIRONMENT) time the work, they
# are not work, and would dilute the error rate.
LAST_HOUR = text(
    "SELECT count(*), count(*) FILTER (WHERE result = 'failure'), count(*) FILTER (WHERE result = 'error') "
    "FROM task_history WHERE started_at > now() - interval '1 hour' AND task_name <> :environment"
).bindparams(environment=TaskName.ENVIRONMENT.value)


def database_health(engine: Engine) -> tuple[DatabaseHealth, FailureRate]:
    stats = database_stats(engine)
    with engine.connect() as conn:
        connections = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        )
        tasks, failures, errors = conn.execute(LAST_HOUR).one()
        health = DatabaseHealth(
            connections=connections.scalar_one(),
            lock_waits=len(stats.lock_waits),
            deadlocks=stats.deadlocks,
            inserts=sum(t.inserts for t in stats.tables),
            updates=sum(t.updates for t in stats.tables),
            deletes=sum(t.deletes for t in stats.tables),
            dead_tuples=sum(t.dead for t in stats.tables),
        )
    return health, FailureRate(tasks=tasks, package_failures=failures, infrastructure_errors=errors)
