"""Retry policies shared by the workflows."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# Deterministic failures are raised non-retryable by the activities themselves; everything else
# (a worker that died, a database restart, a testbed failure) is retried with backoff.
TOOL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
)
# A campaign test that fails for infrastructure reasons never becomes a verdict: it is retried until it
# runs (or its campaign is cancelled), with backoff up to ten minutes between attempts.
CAMPAIGN_TEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=10)
)
