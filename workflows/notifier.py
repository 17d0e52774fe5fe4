"""The notifier: a long-running workflow that reads the news since its cursor and has every event
delivered to every webhook URL, each delivery in a workflow of its own.

The cursor lives in this workflow's state (carried across continue-as-new), so a worker restart neither
skips nor repeats news. Each (event, URL) delivery is a `WebhookDelivery` child with a workflow id made
from its idempotency key: it retries until the receiver takes it, however long that is, while the
notifier goes on (a receiver that is down holds up no other); the child is abandoned on continue-as-new
and runs on. Its id also means an event is delivered to a URL by one workflow only.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models.notify_payloads import (
        DeliveryInput,
        DeliveryResult,
        NewsCursor,
        NotifierInput,
        PollNewsInput,
        PollNewsResult,
        idempotency_key,
    )
    from models.vocabulary import ActivityName
    from workflows.policies import DB_RETRY

NOTIFIER_ID = "debflow-notifier"
# Polls and deliveries per run before continuing as new, far below Temporal's history limits.
POLLS_PER_RUN = 200
DELIVERIES_PER_RUN = 1000
POLL_TIMEOUT = timedelta(minutes=2)
# A database that is away longer than DB_RETRY allows fails the poll: the notifier then waits and polls
# again with the same cursor instead of failing.
POLL_RETRY = RetryPolicy(
    initial_interval=DB_RETRY.initial_interval,
    maximum_interval=DB_RETRY.maximum_interval,
    maximum_attempts=0,
)


@workflow.defn(name="Notifier")
class NotifierWorkflow:
    """Reads news since its cursor every `poll_interval_s` and starts one delivery per event and URL."""

    def __init__(self) -> None:
        self._cursor: NewsCursor | None = None
        self._delivered = 0

    @workflow.query
    def cursor(self) -> NewsCursor | None:
        """How far the notifier has read (None until its first poll)."""
        return self._cursor

    @workflow.query
    def delivered(self) -> int:
        return self._delivered

    @workflow.run
    async def run(self, params: NotifierInput) -> None:
        self._cursor, self._delivered = params.cursor, params.delivered
        started = self._delivered
        for _ in range(POLLS_PER_RUN):
            polled = await workflow.execute_activity(
                ActivityName.POLL_NEWS,
                PollNewsInput(cursor=self._cursor),
                result_type=PollNewsResult,
                start_to_close_timeout=POLL_TIMEOUT,
                retry_policy=POLL_RETRY,
            )
            for event in polled.events:
                for url in polled.urls:
                    await self._deliver(
                        params,
                        DeliveryInput(
                            event=event,
                            url=url,
                            idempotency_key=idempotency_key(event.id, url),
                            retry_max_interval_s=params.retry_max_interval_s,
                            delivery_timeout_s=params.delivery_timeout_s,
                        ),
                    )
            # Moved on only once every delivery of the page has its own workflow.
            self._cursor = polled.cursor
            if (
                self._delivered - started >= DELIVERIES_PER_RUN
                or workflow.info().is_continue_as_new_suggested()
            ):
                break
            if not polled.more:
                await workflow.sleep(timedelta(seconds=params.poll_interval_s))
        workflow.continue_as_new(
            params.model_copy(update={"cursor": self._cursor, "delivered": self._delivered})
        )

    async def _deliver(self, params: NotifierInput, delivery: DeliveryInput) -> None:
        try:
            await workflow.start_child_workflow(
                WebhookDeliveryWorkflow.run,
                delivery,
                id=f"webhook-{delivery.idempotency_key}",
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # A delivery that was terminated may be started again; one that succeeded or runs may not.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("%s to %s: already delivered or under way", delivery.event.id, delivery.url)
            return
        self._delivered += 1


@workflow.defn(name="WebhookDelivery")
class WebhookDeliveryWorkflow:
    """One event to one URL: retried with backoff until the receiver answers 2xx."""

    @workflow.run
    async def run(self, params: DeliveryInput) -> DeliveryResult:
        delivered: DeliveryResult = await workflow.execute_activity(
            ActivityName.DELIVER_WEBHOOK,
            params,
            result_type=DeliveryResult,
            # The HTTP timeout, and a margin for the worker to report.
            start_to_close_timeout=timedelta(seconds=params.delivery_timeout_s + 10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=params.retry_max_interval_s),
                maximum_attempts=0,  # never given up: at least once, never lost
            ),
        )
        return delivered
