"""Every page's data as JSON under /api (described by /api/openapi.json), the loaders the HTML pages
share, and debci's latest.json / history.json per package, suite and architecture."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from activities.suites.suite import source_binaries
from web import ids
from web.dependencies import context
from web.live import Cached, KeyedCache, Live, LiveView, RunInfo
from web.queries_packages import HistoryPage, PackagePage, debci_runs, history_runs, package_page
from web.queries_runs import CampaignPage, UploadRunPage, campaign_counts, campaign_page, upload_run
from web.queries_status import HomeData, StatusData, home_data, status_data

router = APIRouter(prefix="/api", tags=["results"])
T = TypeVar("T")
NEWEST = sys.maxsize  # `before` of the first history page
Before = Annotated[int | None, Query(ge=1, le=2**62, description="artifact id to list older runs than")]
Page = Annotated[int, Query(ge=1, le=100_000)]
VerdictFilter = Annotated[str | None, Query(pattern=r"^[A-Z][A-Z-]{0,31}$", description="e.g. REGRESSION")]


async def in_db(request: Request, read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a query function with a session in the thread pool (the event loop never waits on SQL)."""
    sessions = context(request).sessions

    def go() -> T:
        with sessions() as db:
            return read(db, *args, **kwargs)

    return await run_in_threadpool(go)


async def live_of(request: Request) -> Live:
    view: LiveView = request.app.state.live
    return await view.get()


class Home(BaseModel):
    live: Live
    data: HomeData


class UploadRun(BaseModel):
    run: RunInfo | None
    ui_link: str | None
    page: UploadRunPage


class Campaign(BaseModel):
    run: RunInfo | None
    ui_link: str | None
    page: CampaignPage
    # The trigger's version in the suite (what the reference side ran with); the run has the new one.
    trigger_suite_version: str | None = None


class Status(BaseModel):
    live: Live
    data: StatusData


async def load_home(request: Request) -> Home:
    return Home(live=await live_of(request), data=await in_db(request, home_data))


async def load_package(request: Request, source: str) -> PackagePage:
    found = await in_db(request, package_page, ids.source_name(source))
    if found is None:
        raise ids.not_found(f"no results of source package {source!r}")
    return found


async def load_history(
    request: Request, source: str, suite: str, arch: str, before: int | None
) -> HistoryPage:
    checked = (ids.source_name(source), ids.suite_name(suite), ids.architecture(arch))
    page = await in_db(request, history_runs, *checked, before=before or NEWEST, limit=50)
    if not page.runs and before is None:
        raise ids.not_found(f"no autopkgtest runs of {source} in {suite} on {arch}")
    return page


async def load_run(request: Request, workflow_id: str) -> UploadRun:
    ids.run_id(workflow_id)
    page = await in_db(request, upload_run, workflow_id)
    live = await live_of(request)
    run = live.run(workflow_id)
    if not page.artifacts and not page.tasks and run is None:
        raise ids.not_found(f"no run {workflow_id[:60]!r}: nothing stored, and Temporal lists none")
    return UploadRun(run=run, ui_link=live.ui_link(workflow_id), page=page)


class CampaignSummary(BaseModel):
    counts: dict[str, int]
    trigger_suite_version: str | None


async def load_campaign(request: Request, campaign_id: str, verdict: str | None, page: int) -> Campaign:
    ids.run_id(campaign_id, "campaign")
    live = await live_of(request)
    run = live.run(campaign_id)

    def summary(db: Session) -> CampaignSummary:
        old = suite_version(db, run.suite, run.package) if run and run.package else None
        return CampaignSummary(counts=campaign_counts(db, campaign_id), trigger_suite_version=old)

    # What every viewer of the campaign shares (counts over all its targets), made once per few seconds.
    summaries: KeyedCache[CampaignSummary] = request.app.state.campaign_summaries
    known = await summaries.get(campaign_id, lambda: in_db(request, summary))
    if not known.counts and run is None:
        raise ids.not_found(f"no campaign {campaign_id[:60]!r}: no verdict stored, and Temporal lists none")
    found = await in_db(request, campaign_page, campaign_id, counts=known.counts, verdict=verdict, page=page)
    return Campaign(
        run=run,
        ui_link=live.ui_link(campaign_id),
        page=found,
        trigger_suite_version=known.trigger_suite_version,
    )


def suite_version(db: Session, suite: str, source: str) -> str | None:
    try:
        return source_binaries(session=db, suite=suite, source=source)[0]
    except LookupError:  # a suite not imported here, or a new source
        return None


async def load_status(request: Request) -> Status:
    # The same aggregates for everyone, over every run of two weeks: made once per `status_ttl_s`.
    cache: Cached[StatusData] = request.app.state.status_cache
    data = await cache.get(lambda: in_db(request, status_data))
    return Status(live=await live_of(request), data=data)


@router.get("/home")
async def home(request: Request) -> Home:
    """What runs now, recent results and confirmed regressions."""
    return await load_home(request)


@router.get("/packages/{source}")
async def package(request: Request, source: str) -> PackagePage:
    """A source package's latest results per suite and architecture, and its campaign verdicts."""
    return await load_package(request, source)


@router.get("/packages/{source}/{suite}/{arch}")
async def history(request: Request, source: str, suite: str, arch: str, before: Before = None) -> HistoryPage:
    """A page of autopkgtest runs, newest first; `next_before` asks for the next page."""
    return await load_history(request, source, suite, arch, before)


@router.get("/packages/{source}/{suite}/{arch}/latest.json")
async def debci_latest(request: Request, source: str, suite: str, arch: str) -> dict[str, Any]:
    """The newest run in debci's shape (what tracker.debian.org reads)."""
    page = await load_history(request, source, suite, arch, None)
    return debci_runs(page)[0]


@router.get("/packages/{source}/{suite}/{arch}/history.json")
async def debci_history(request: Request, source: str, suite: str, arch: str) -> list[dict[str, Any]]:
    """The newest 50 runs, newest first, in debci's shape."""
    return debci_runs(await load_history(request, source, suite, arch, None))


@router.get("/runs/{workflow_id}")
async def run(request: Request, workflow_id: str) -> UploadRun:
    """An upload run: its artifacts (with per-test results and lintian tags) and task history."""
    return await load_run(request, workflow_id)


@router.get("/campaigns/{campaign_id}")
async def campaign(
    request: Request, campaign_id: str, verdict: VerdictFilter = None, page: Page = 1
) -> Campaign:
    """Verdict counts and a page of verdicts, REGRESSION first, each with both logs."""
    return await load_campaign(request, campaign_id, verdict, page)


@router.get("/status")
async def status(request: Request) -> Status:
    """Daily results per suite and architecture, queues, slow tests, differing architectures, errors."""
    return await load_status(request)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
