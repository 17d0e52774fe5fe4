"""debflow's own metrics, exported with the Temporal SDK's on each worker's Prometheus endpoint.

The composition root builds one `Metrics` from the runtime's meter and gives it to what records; the
default, NO_METRICS, is a no-op, so the same code also runs in tests and tools without a runtime.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from temporalio.common import MetricMeter

# Metric names (documented in docs/operations.md "Metrics").
TASKS = "debflow_tasks"
TASK_SECONDS = "debflow_task_duration_seconds"
ARTIFACTS = "debflow_artifacts_stored"
ARTIFACT_BYTES = "debflow_artifact_bytes_stored"
EXPIRY_DELETIONS = "debflow_expiry_deletions"
DB_TRANSACTION_SECONDS = "debflow_db_transaction_seconds"
REGRESSIONS = "debflow_regressions_found"  # recorded by the Campaign workflow (replay-safe meter)


class Metrics:
    """The instruments, created once from a meter."""

    def __init__(self, meter: MetricMeter) -> None:
        self.tasks = meter.create_counter(TASKS, "finished tasks by task name and result")
        self.task_seconds = meter.create_histogram_float(TASK_SECONDS, "task durations", "s")
        self.artifacts = meter.create_counter(ARTIFACTS, "artifacts registered, by category")
        self.artifact_bytes = meter.create_counter(ARTIFACT_BYTES, "bytes of new blobs in the store", "By")
        self.expiry_deletions = meter.create_counter(EXPIRY_DELETIONS, "rows removed by expiry, by kind")
        self.db_seconds = meter.create_histogram_float(DB_TRANSACTION_SECONDS, "database transactions", "s")

    def task_finished(self, task: str, result: str, seconds: float, count: int = 1) -> None:
        self.tasks.add(count, {"task": task, "result": result})
        self.task_seconds.with_additional_attributes({"task": task}).record(seconds)

    def artifacts_stored(self, categories: list[str], new_bytes: int) -> None:
        for category in set(categories):
            self.artifacts.add(categories.count(category), {"category": category})
        if new_bytes:
            self.artifact_bytes.add(new_bytes)

    def expired(self, kind: str, count: int) -> None:
        if count:
            self.expiry_deletions.add(count, {"kind": kind})


NO_METRICS = Metrics(MetricMeter.noop)


def instrument_engine(engine: Engine, metrics: Metrics) -> None:
    """Record the duration of every transaction on `engine`, from BEGIN to COMMIT or ROLLBACK."""

    @event.listens_for(engine, "begin")
    def begin(conn: Any) -> None:
        conn.info["debflow_began"] = time.monotonic()

    def end(conn: Any) -> None:
        began = conn.info.pop("debflow_began", None)
        if began is not None:
            metrics.db_seconds.record(time.monotonic() - began)

    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)
