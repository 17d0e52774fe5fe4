"""Webhook activities: read the news since a cursor; POST one event to one URL, signed with HMAC-SHA256.

The secret and the URLs come from the worker's settings, never from a workflow's input, so the secret is
in no Temporal history. A receiver that answers anything but 2xx, or cannot be reached, fails the
activity: Temporal retries it with backoff until the receiver takes it (docs/notifications.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services.newsworthy import news_since, start_cursor
from models.notify_payloads import (
    DeliveryInput,
    DeliveryResult,
    PollNewsInput,
    PollNewsResult,
    event_json,
)
from models.vocabulary import ActivityName

SIGNATURE_HEADER = "X-Debflow-Signature"
EVENT_HEADER = "X-Debflow-Event"
DELIVERY_HEADER = "Idempotency-Key"
USER_AGENT = "debflow-webhook/1"


def signature(secret: str, body: bytes) -> str:
    """The `X-Debflow-Signature` value of a body: `sha256=` and the hex HMAC-SHA256 under the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(delivery: DeliveryInput) -> bytes:
    # Sorted keys and no spaces: the same event is the same bytes on every try.
    return json.dumps(event_json(delivery.event), sort_keys=True, separators=(",", ":")).encode()


class WebhookActivities:
    """The notifier's activities over one database and the worker's webhook settings."""

    def __init__(
        self, *, sessions: sessionmaker[Session], urls: list[str], secret: str | None, history_keep: int
    ) -> None:
        self.sessions = sessions
        self.urls = urls
        self.secret = secret
        self.history_keep = history_keep

    @activity.defn(name=ActivityName.POLL_NEWS)
    def poll_news(self, params: PollNewsInput) -> PollNewsResult:
        """The events since the cursor and the cursor after them; the first poll only sets the cursor."""
        with self.sessions() as session:
            if params.cursor is None:
                return PollNewsResult(cursor=start_cursor(session), urls=list(self.urls))
            events, cursor, more = news_since(
                session, params.cursor, keep=self.history_keep, max_rows=params.max_rows
            )
        return PollNewsResult(cursor=cursor, events=events, urls=list(self.urls), more=more)

    @activity.defn(name=ActivityName.DELIVER_WEBHOOK)
    def deliver_webhook(self, params: DeliveryInput) -> DeliveryResult:
        """POST the event; a 2xx answer is delivery, anything else is retried by Temporal."""
        if not self.secret:
            # Settings refuse URLs without a secret; a worker started otherwise must not send unsigned.
            raise ApplicationError("this worker has no DEBFLOW_WEBHOOK_SECRET: it does not deliver webhooks")
        body = event_body(params)
        request = urllib.request.Request(
            params.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: signature(self.secret, body),
                EVENT_HEADER: str(params.event.type),
                DELIVERY_HEADER: params.idempotency_key,
            },
        )
        attempt = activity.info().attempt
        try:
            with urllib.request.urlopen(request, timeout=params.delivery_timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as e:
            raise ApplicationError(f"{params.url} answered {e.code} (try {attempt})") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApplicationError(f"{params.url} cannot be reached: {reason} (try {attempt})") from None
        activity.logger.info("delivered %s to %s (%d, try %d)", params.event.id, params.url, status, attempt)
        return DeliveryResult(status=status, attempt=attempt)

    def all(self) -> list[Callable[..., Any]]:
        return [self.poll_news, self.deliver_webhook]
