"""Newsworthy results and the Atom feeds, on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from activities.campaigns.campaign_verdicts import store_verdicts
from activities.services.newsworthy import newest_news
from activities.storage.history import TaskHistoryWriter
from models.campaign import RunResult, TargetVerdict, Verdict
from models.notify_payloads import EventType
from web.feeds import ATOM, router
from worker.context import Context
from worker.settings import Settings

A = f"{{{ATOM}}}"
BEGIN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def package(stem: str) -> str:
    """A name no other test uses (one database serves the session)."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def record(
    sessions: sessionmaker[Session],
    source: str,
    results: list[str],
    *,
    task: str = "autopkgtest",
    context: str = "sid/amd64",
    data: dict[str, Any] | None = None,
    begin: dt.datetime = BEGIN,
) -> None:
    """Task-history rows of one series, oldest first, written as the activities write them."""
    writer = TaskHistoryWriter(keep_newest=5)
    with sessions.begin() as session:
        for n, result in enumerate(results):
            writer.add(
                session,
                task_name=task,
                subject=source,
                context=context,
                workflow_id=f"upload-{source}_1.{n}",
                started_at=begin + dt.timedelta(hours=n),
                duration_s=1.0,
                result=result,
                usage=[],
                data={"version": f"1.{n}", **(data or {})},
            )


def regression(sessions: sessionmaker[Session], source: str, tests: list[str]) -> None:
    verdict = TargetVerdict(
        source=source,
        version="2.0",
        architecture="amd64",
        verdict=Verdict.REGRESSION,
        new=RunResult.FAIL,
        reference=RunResult.PASS,
        regressed_tests=tests,
        attempts=2,
    )
    with sessions.begin() as session:
        store_verdicts(session, suite="sid", campaign_id=f"campaign-{source}", verdicts=[verdict])


def transitions(sessions: sessionmaker[Session], source: str) -> list[tuple[str | None, str]]:
    with sessions() as session:
        events = newest_news(session, keep=5, package=source)
    return [(e.previous_result, e.result) for e in reversed(events) if e.type is EventType.RESULT]


def test_a_result_is_news_when_it_differs_from_the_one_before(sessions: sessionmaker[Session]) -> None:
    source = package("news")
    record(sessions, source, ["success", "success", "failure", "error", "failure", "success"])
    # The first result is news; pass→pass is not; an infrastructure error is no result at all.
    assert transitions(sessions, source) == [
        (None, "success"),
        ("success", "failure"),
        ("failure", "success"),
    ]


def test_series_are_per_task_suite_and_architecture(sessions: sessionmaker[Session]) -> None:
    source = package("series")
    record(sessions, source, ["success"], context="sid/amd64")
    record(sessions, source, ["success"], context="sid/arm64")
    record(sessions, source, ["failure"], task="lintian", context="sid/amd64")
    # A campaign's new-side runs are judged by its verdicts, not as a series of their own.
    record(sessions, source, ["failure"], context="sid/amd64/new")
    assert sorted(transitions(sessions, source)) == [(None, "failure"), (None, "success"), (None, "success")]


def test_pruned_history_claims_no_news(sessions: sessionmaker[Session]) -> None:
    # Nine results: the writer keeps the newest five and the last success; the row before the oldest
    # kept one is gone, so it is not judged (it would look like a success→failure change).
    source = package("pruned")
    record(sessions, source, ["success", *["failure"] * 8])
    assert transitions(sessions, source) == []


def feeds_app(settings: Settings) -> FastAPI:
    """The smallest application the feeds router runs in (the site's create_app mounts it the same way)."""
    app = FastAPI()
    app.state.context = Context(settings)
    app.include_router(router)
    return app


@pytest_asyncio.fixture
async def feeds(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = feeds_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://debflow.test") as client:
        yield client
    app.state.context.close()


def parse(response: Any) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    root = ET.fromstring(response.content)
    assert root.tag == f"{A}feed"
    return root


async def test_package_feed_lists_news_newest_first_as_escaped_text(
    sessions: sessionmaker[Session], feeds: httpx.AsyncClient
) -> None:
    source = package("feed")
    record(sessions, source, ["success", "success", "failure"])
    hostile = "<script>alert(1)</script> & \x07bell"
    regression(sessions, source, [hostile])
    response = await feeds.get(f"/feeds/packages/{source}.atom")
    root = parse(response)
    entries = root.findall(f"{A}entry")
    titles = [e.findtext(f"{A}title") or "" for e in entries]
    assert len(entries) == 3
    assert "regressed in campaign" in titles[0] and "<script>alert(1)</script> & \ufffdbell" in titles[0]
    assert titles[1].endswith("success → failure") and titles[2].endswith("no result → success")
    # Text, never markup: the raw bytes hold the escaped form only.
    assert b"<script>" not in response.content and b"&lt;script&gt;" in response.content
    ids = [e.findtext(f"{A}id") or "" for e in entries]
    assert all(i.startswith("tag:") for i in ids) and len(set(ids)) == 3
    # Stable: the same entries have the same ids on the next request.
    again = parse(await feeds.get(f"/feeds/packages/{source}.atom"))
    assert [e.findtext(f"{A}id") for e in again.findall(f"{A}entry")] == ids
    for entry in entries:
        assert entry.find(f"{A}content").get("type") == "text"  # type: ignore[union-attr]
        assert (entry.findtext(f"{A}updated") or "").endswith("Z")


async def test_overall_feed_is_bounded_and_holds_every_package(
    sessions: sessionmaker[Session], feeds: httpx.AsyncClient
) -> None:
    first, second = package("one"), package("two")
    # Dated after anything the session's other tests record (one database serves them all), so that these
    # are among the newest 50 entries whatever ran before.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    record(sessions, first, ["failure"], begin=later)
    record(sessions, second, ["success", "failure"], begin=later)
    entries = parse(await feeds.get("/feeds/all.atom")).findall(f"{A}entry")
    titles = " ".join(e.findtext(f"{A}title") or "" for e in entries)
    assert first in titles and second in titles
    assert len(entries) <= 50


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/feeds/packages/Upper.atom", 400),
        ("/feeds/packages/a.atom", 400),
        ("/feeds/packages/%3Cscript%3E.atom", 400),
        (f"/feeds/packages/{'a' * 101}.atom", 400),
        ("/feeds/packages/never-heard-of-it.atom", 404),
    ],
)
async def test_bad_and_unknown_names_get_one_line(feeds: httpx.AsyncClient, path: str, status: int) -> None:
    response = await feeds.get(path)
    assert response.status_code == status
    assert response.text.startswith("error: ") and response.text.count("\n") == 1
    assert "Traceback" not in response.text
