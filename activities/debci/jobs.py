"""The database side of debci jobs (workflows/debci_jobs.py): read a page of a call's jobs, record results.

Each job row is written by its API call and once more here, when it is decided: no job row is updated
twice by the runs, so a recording transaction never waits for another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import BigInteger, Float, Integer, Text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import translate_errors
from activities.storage.history import TaskHistoryWriter
from activities.storage.retention import set_timeouts
from models.campaign import Pin
from models.debci import DebciStatus, JobPage, JobPageInput, JobRun, RecordJobsInput, temporal_priority
from models.expiry_payloads import ExpiryBatchInput, ExpiryBatchResult
from models.vocabulary import ActivityName, TaskName, TaskResult

_TRANSACTION = text("SELECT pg_xact_status(CAST(CAST(:txid AS text) AS xid8))")
_PAGE = text(
    "SELECT id, package, version, trigger, pins, priority, is_private FROM debci_job "
    "WHERE id BETWEEN :first AND :last AND id > :after AND batch_workflow_id = :batch AND status IS NULL "
    "ORDER BY id LIMIT :limit"
)
_RECORD = text(
    "UPDATE debci_job AS j SET status = r.status, exit_code = r.exit_code, log_artifact_id = r.log, "
    "duration_s = r.duration, worker = r.worker, cause = r.cause, updated_at = now() "
    "FROM unnest(:ids, :statuses, :exit_codes, :logs, :durations, :workers, :causes) "
    "AS r(id, status, exit_code, log, duration, worker, cause) "
    "WHERE j.id = r.id AND j.status IS NULL "
    "RETURNING j.id, j.package, j.trigger, j.is_private, j.log_artifact_id"
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)),
    bindparam("statuses", type_=ARRAY(Text)),
    bindparam("exit_codes", type_=ARRAY(Integer)),
    bindparam("logs", type_=ARRAY(BigInteger)),
    bindparam("durations", type_=ARRAY(Float)),
    bindparam("workers", type_=ARRAY(Text)),
    bindparam("causes", type_=ARRAY(Text)),
)
# A private job's log is shown to its requester only (web/debci_api.py); the site refuses it.
_PRIVATE_LOGS = text(
    "UPDATE artifact SET data = data || '{\"private\": true}' WHERE id = ANY(:ids) "
    "AND category = 'debian:autopkgtest'"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))

# Finished jobs past their period, oldest first, a batch at a time; a row another transaction holds is
# left for the next run (SKIP LOCKED): expiry never waits for the API or the runs.
_EXPIRED_JOBS = text(
    "DELETE FROM debci_job WHERE id IN (SELECT id FROM debci_job WHERE status IS NOT NULL "
    "AND updated_at < :cutoff ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
)

HISTORY_RESULTS = {
    DebciStatus.PASS: TaskResult.SUCCESS,
    DebciStatus.FAIL: TaskResult.FAILURE,
    DebciStatus.NEUTRAL: TaskResult.SKIPPED,
    DebciStatus.TMPFAIL: TaskResult.ERROR,
}


class DebciJobTasks:
    """The debci jobs' short database activities (the control queue)."""

    def __init__(self, *, sessions: sessionmaker[Session], history: TaskHistoryWriter | None = None) -> None:
        self.sessions = sessions
        self.history = history or TaskHistoryWriter()

    @activity.defn(name=ActivityName.PLAN_DEBCI_JOBS)
    def plan_debci_jobs(self, params: JobPageInput) -> JobPage:
        """The next page of the batch's pending jobs, once the API call that stored them is decided (an
        aborted call leaves none)."""
        from activities.suites.suite import suite_state

        with translate_errors(), self.sessions() as session:
            decided = session.scalar(_TRANSACTION, {"txid": params.txid})
            if decided == "in progress":
                raise ApplicationError(
                    f"the API call's transaction {params.txid} is still open", type="TransactionOpen"
                )
            rows = session.execute(
                _PAGE,
                {
                    "first": params.first_job,
                    "last": params.last_job,
                    "after": params.after,
                    "batch": params.batch,
                    "limit": params.limit,
                },
            ).all()
            state = suite_state(session=session, suite=params.suite) if rows else ""
        jobs = [
            JobRun(
                job_id=row.id,
                package=row.package,
                version=row.version,
                trigger=row.trigger,
                pins=[Pin(packages=p[0].split(","), suite=p[1]) for p in row.pins],
                priority_key=temporal_priority(row.priority),
                private=row.is_private,
            )
            for row in rows
        ]
        return JobPage(suite_state=state, jobs=jobs)

    @activity.defn(name=ActivityName.RECORD_DEBCI_RESULTS)
    def record_debci_results(self, params: RecordJobsInput) -> int:
        """Decide the jobs (idempotent: a decided job is not written again) and add the public runs to the
        task history; returns how many jobs were decided now."""
        results = params.results
        with translate_errors(), self.sessions.begin() as session:
            decided = session.execute(
                _RECORD,
                {
                    "ids": [r.job_id for r in results],
                    "statuses": [str(r.status) for r in results],
                    "exit_codes": [r.exit_code for r in results],
                    "logs": [r.log_artifact_id for r in results],
                    "durations": [r.duration_s for r in results],
                    "workers": [r.worker for r in results],
                    "causes": [r.cause for r in results],
                },
            ).all()
            by_id = {r.job_id: r for r in results}
            private_logs = [
                row.log_artifact_id
                for row in decided
                if row.is_private and row.log_artifact_id and not by_id[row.id].reused_reference
            ]
            if private_logs:
                session.execute(_PRIVATE_LOGS, {"ids": private_logs})
        task = TaskName.SIMULATED_AUTOPKGTEST if params.simulated else TaskName.AUTOPKGTEST
        now = dt.datetime.now(dt.UTC)
        rows: list[dict[str, Any]] = [
            {
                "task_name": task,
                "subject": row.package,
                "context": f"{params.suite}/{params.architecture}/debci",
                "worker": by_id[row.id].worker,
                "workflow_id": activity.info().workflow_id,
                "started_at": now - dt.timedelta(seconds=by_id[row.id].duration_s),
                "duration_s": by_id[row.id].duration_s,
                "result": HISTORY_RESULTS[by_id[row.id].status],
                "data": {"version": by_id[row.id].version, "trigger": row.trigger, "run_id": row.id},
            }
            for row in decided
            if not row.is_private and not by_id[row.id].reused_reference
        ]
        self.history.record(self.sessions, rows)
        return len(decided)

    @activity.defn(name=ActivityName.EXPIRE_DEBCI_JOBS)
    def expire_debci_jobs(self, params: ExpiryBatchInput) -> ExpiryBatchResult:
        """Delete one batch of finished jobs older than the policy's period (their requests go with them)."""
        policy = params.policy
        with translate_errors(), self.sessions.begin() as session:
            set_timeouts(session, policy)
            deleted = session.execute(
                _EXPIRED_JOBS,
                {"cutoff": params.now - dt.timedelta(days=policy.debci_job_days), "limit": policy.batch_size},
            )
            changed = int(deleted.rowcount)  # type: ignore[attr-defined]
        return ExpiryBatchResult(changed=changed, done=changed < policy.batch_size)

    def all(self) -> list[Callable[..., Any]]:
        return [self.plan_debci_jobs, self.record_debci_results, self.expire_debci_jobs]
