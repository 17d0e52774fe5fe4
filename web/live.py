"""What runs now, from Temporal's visibility API, behind a short in-process cache.

One refresh (a visibility listing, a progress query per running campaign, a description per queue) serves
every page view of the next `ttl` seconds, so a page never costs a Temporal round trip per row; concurrent
views wait for the one refresh under way instead of starting their own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from models.campaign import CampaignProgress
from worker.context import Context
from workflows import search_attributes as sa

log = logging.getLogger("debflow.site")

LISTED = 300  # newest debflow workflows listed per refresh (uploads and campaigns of every kind)
PROGRESS_QUERIES = 10  # running campaigns asked for their progress per refresh
T = TypeVar("T")


class RunInfo(BaseModel):
    """A debflow workflow as its search attributes describe it."""

    workflow_id: str
    kind: str
    package: str = ""
    version: str = ""
    suite: str = ""
    architectures: list[str] = Field(default_factory=list)
    result: str = ""
    status: str = ""
    started_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    progress: CampaignProgress | None = None

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    def eta_s(self, now: dt.datetime) -> float | None:
        """Seconds left, from the share of expected test time already done (None: not yet known)."""
        p = self.progress
        if p is None or self.started_at is None or not p.expected_total_s or not p.expected_finished_s:
            return None
        elapsed = (now - self.started_at).total_seconds()
        return max(0.0, elapsed * (p.expected_total_s / p.expected_finished_s - 1))


class QueueLoad(BaseModel):
    name: str
    kind: str
    workers: int
    backlog: int
    backlog_age_s: float


class Live(BaseModel):
    """One refresh's answer; `error` says why Temporal could not be read (the pages still render)."""

    fetched_at: dt.datetime
    error: str = ""
    runs: list[RunInfo] = Field(default_factory=list)
    queues: list[QueueLoad] = Field(default_factory=list)
    ui_url: str | None = None
    namespace: str = ""

    def run(self, workflow_id: str) -> RunInfo | None:
        return next((r for r in self.runs if r.workflow_id == workflow_id), None)

    def ui_link(self, workflow_id: str) -> str | None:
        if not self.ui_url:
            return None
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows/{workflow_id}"


def _info(execution: WorkflowExecution) -> RunInfo:
    attrs = execution.typed_search_attributes
    return RunInfo(
        workflow_id=execution.id,
        kind=attrs.get(sa.KIND) or "",
        package=attrs.get(sa.PACKAGE) or "",
        version=attrs.get(sa.VERSION) or "",
        suite=attrs.get(sa.SUITE) or "",
        architectures=list(attrs.get(sa.ARCHITECTURES) or []),
        result=attrs.get(sa.RESULT) or "",
        status=execution.status.name if execution.status else "",
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


class Cached(Generic[T]):
    """A value made at most every `ttl` seconds; while one request remakes it, the others take the
    previous one instead of waiting (only the very first requests wait)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._value: T | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._value is not None and (time.monotonic() - self._at < self.ttl or self._lock.locked()):
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl:
                self._value = await make()
                self._at = time.monotonic()
        return self._value


class KeyedCache(Generic[T]):
    """A Cached value per key (a campaign id); the least recently made go beyond `size` keys."""

    def __init__(self, ttl: float, size: int = 256) -> None:
        self.ttl = ttl
        self.size = size
        self._values: OrderedDict[str, Cached[T]] = OrderedDict()

    async def get(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        cached = self._values.get(key)
        if cached is None:
            cached = self._values[key] = Cached(self.ttl)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return await cached.get(make)


class LiveView:
    """The cached view of what runs; one per application."""

    def __init__(self, context: Context, *, ttl: float = 5.0) -> None:
        self.context = context
        self._cached: Cached[Live] = Cached(ttl)

    async def get(self) -> Live:
        return await self._cached.get(self._refresh)

    async def _refresh(self) -> Live:
        now = dt.datetime.now(dt.UTC)
        try:
            client = await asyncio.wait_for(self.context.temporal(), timeout=5)
            live = Live(fetched_at=now, ui_url=self.context.ui_url, namespace=client.namespace)
            live.runs = await asyncio.wait_for(self._runs(client), timeout=10)
            live.queues = await asyncio.wait_for(self._queues(client), timeout=10)
        except Exception as e:  # Temporal down is shown on the pages, it does not break them
            log.warning("Temporal visibility unavailable: %s", e)
            return Live(fetched_at=now, error=f"{type(e).__name__}: {e}".splitlines()[0][:200])
        return live

    async def _runs(self, client: Client) -> list[RunInfo]:
        runs = [
            _info(e)
            # Newest first is the listing's own order (the dev server's visibility store refuses ORDER BY).
            async for e in client.list_workflows("DebflowKind IS NOT NULL", limit=LISTED)
        ]
        # Only campaigns answer the progress query (uploads show their tasks, debci batches their counts).
        campaigns = [r for r in runs if r.running and r.kind == "campaign"][:PROGRESS_QUERIES]

        async def progress(run: RunInfo) -> None:
            try:
                found = await client.get_workflow_handle(run.workflow_id).query(
                    "progress", result_type=CampaignProgress
                )
            except (RPCError, Exception):  # no worker yet, or a kind without that query
                return
            run.progress = found

        await asyncio.gather(*(progress(r) for r in campaigns))
        return runs

    async def _queues(self, client: Client) -> list[QueueLoad]:
        from worker.task_queues import debflow_queues, queue_status

        settings = self.context.settings
        wanted = debflow_queues(settings.task_queue, settings.architectures)
        described = await asyncio.gather(*(queue_status(client, n, kinds) for n, kinds in wanted))
        return [
            QueueLoad(
                name=q.name,
                kind=q.kind,
                workers=len(q.pollers),
                backlog=q.backlog,
                backlog_age_s=q.backlog_age_s,
            )
            for found in described
            for q in found
            if q.name == settings.task_queue or q.pollers or q.backlog
        ]
