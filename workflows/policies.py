"""Retry policies shared by the workflows (docs/retries.md)."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# Deterministic failures are raised non-retryable by the activities themselves (bad input, a missing
# tool, an unsupported architecture); everything else — a worker that died or missed its heartbeat, a
# database restart, a mirror or testbed failure — is retried: after 5 s, then 10 s, at most 3 tries.
TOOL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
)
# Timeouts from task history are an optimisation: a few quick tries, then the configured timeouts.
ESTIMATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=3
)
# A campaign test that fails for infrastructure reasons never becomes a verdict: it is retried until it
# runs (or its campaign is cancelled), with backoff up to ten minutes between attempts.
CAMPAIGN_TEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=10)
)
