"""Payloads of notifications: news events (feeds and webhooks), the notifier's cursor, one delivery."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from typing import Any

from pydantic import BaseModel, Field


class EventType(enum.StrEnum):
    """What a news event tells (the `X-Debflow-Event` header, the `type` of the JSON)."""

    RESULT = "newsworthy-result"  # a result that differs from the previous one of its series
    REGRESSION = "confirmed-regression"  # a campaign verdict REGRESSION, confirmed by a re-run


class NewsEvent(BaseModel):
    """One newsworthy result or confirmed regression: the JSON a webhook receives, an entry of a feed."""

    id: str  # "result/<task_history id>" or "regression/<collection_item id>": stable, never reused
    type: EventType
    time: dt.datetime  # when the task started (results) or the verdict was stored (regressions)
    package: str
    version: str | None = None
    suite: str
    architecture: str
    task: str  # build, lintian, autopkgtest; "campaign" for a regression
    result: str  # success/failure/skipped for results; the new run's PASS/FAIL/… for a regression
    previous_result: str | None = None  # None: the first result of its series
    context: str = ""  # a result's series beyond suite and architecture ("reference" for campaign runs)
    workflow_id: str | None = None
    campaign: str | None = None
    regressed_tests: list[str] = Field(default_factory=list)
    new_log_artifact_id: int | None = None
    reference_log_artifact_id: int | None = None

    @property
    def summary(self) -> str:
        if self.type is EventType.REGRESSION:
            tests = f" ({', '.join(self.regressed_tests)})" if self.regressed_tests else ""
            return f"{self.package} {self.version or ''} regressed in campaign {self.campaign}{tests}"
        before = self.previous_result or "no result"
        return f"{self.package} {self.version or ''} {self.task}: {before} → {self.result}"


class IdGap(BaseModel):
    """Ids below a cursor's mark that were missing when read: a transaction that took them may still
    commit (ids are handed out before commit), so they are looked at again until `until`."""

    low: int
    high: int
    until: dt.datetime


class NewsCursor(BaseModel):
    """How far the notifier has read: the highest id looked at in each source, and the gaps below it."""

    history_id: int = 0
    item_id: int = 0
    history_gaps: list[IdGap] = Field(default_factory=list)
    item_gaps: list[IdGap] = Field(default_factory=list)


class PollNewsInput(BaseModel):
    cursor: NewsCursor | None = None  # None: the first poll, which starts from now and returns no events
    max_rows: int = Field(default=500, ge=1, le=5000)  # rows of each source looked at per poll


class PollNewsResult(BaseModel):
    cursor: NewsCursor
    events: list[NewsEvent] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)  # where the worker's settings say events go
    more: bool = False  # a source had more rows than max_rows: poll again without waiting


class NotifierInput(BaseModel):
    """The long-running notifier's state across continue-as-new."""

    cursor: NewsCursor | None = None
    poll_interval_s: float = Field(default=30, gt=0)
    retry_max_interval_s: float = Field(default=600, gt=0)
    delivery_timeout_s: float = Field(default=30, gt=0)
    delivered: int = 0  # deliveries started by this notifier so far, over all its runs


class DeliveryInput(BaseModel):
    event: NewsEvent
    url: str
    idempotency_key: str
    retry_max_interval_s: float = Field(default=600, gt=0)
    delivery_timeout_s: float = Field(default=30, gt=0)


class DeliveryResult(BaseModel):
    status: int
    attempt: int


def event_json(event: NewsEvent) -> dict[str, Any]:
    """The body a webhook receives (without the computed summary property)."""
    return {**event.model_dump(mode="json"), "summary": event.summary}


def idempotency_key(event_id: str, url: str) -> str:
    """Stable per event and URL, so a receiver recognises a delivery it already took; names neither."""
    return hashlib.sha256(f"{event_id}\n{url}".encode()).hexdigest()[:32]
