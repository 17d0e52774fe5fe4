"""Atom feeds of newsworthy results and confirmed regressions, mounted by the application under /feeds.

`/feeds/all.atom` and `/feeds/packages/SOURCE.atom`: the newest FEED_ENTRIES events, newest first
(activities/services/newsworthy.py says what is news). Entry ids are tag: URIs made from the row an event
comes from, so they never change. Every string is XML text built by ElementTree (escaped, never markup);
characters XML cannot carry are replaced.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Annotated
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from activities.services.newsworthy import newest_news
from models.identifiers import NAME_MAX, preview
from models.notify_payloads import EventType, NewsEvent
from web.dependencies import context, session

ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
FEED_ENTRIES = 50
# tag: URIs (RFC 4151) need an authority and a date; ids stay the same wherever the site is served.
TAG_PREFIX = "tag:debflow.invalid,2026:"
# Debian policy 5.6.1: lower-case letters, digits, + - . ; two characters at least, a letter or digit first.
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# What XML 1.0 cannot hold: most C0 controls, surrogates, U+FFFE/U+FFFF.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_KNOWN_PACKAGE = text(
    "SELECT EXISTS (SELECT 1 FROM task_history WHERE task_name IN ('build', 'lintian', 'autopkgtest') "
    "AND subject = :package) OR EXISTS (SELECT 1 FROM collection_item "
    "WHERE category = 'debian:qa-result' AND (data ->> 'package') = :package "
    "AND (data ->> 'verdict') = 'REGRESSION')"
)

router = APIRouter()
DbSession = Annotated[Session, Depends(session)]


def _text(value: object) -> str:
    return NOT_XML.sub("\ufffd", str(value))


def _add(parent: ET.Element, tag: str, value: object | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: _text(v) for k, v in attributes.items()})
    if value is not None:
        element.text = _text(value)
    return element


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _page(base: str, event: NewsEvent) -> str:
    """The site's history page of the event's series (served by the site's router)."""
    parts = (event.package, event.suite, event.architecture)
    return base + "packages/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _content(event: NewsEvent) -> str:
    lines = [event.summary, f"suite {event.suite}, architecture {event.architecture}"]
    if event.type is EventType.REGRESSION:
        lines.append(f"new run {event.result}, reference run {event.previous_result or 'none'}")
        if event.new_log_artifact_id is not None:
            lines.append(f"new log: artifact {event.new_log_artifact_id}")
        if event.reference_log_artifact_id is not None:
            lines.append(f"reference log: artifact {event.reference_log_artifact_id}")
    elif event.context:
        lines.append(f"campaign run ({event.context} side)")
    if event.workflow_id:
        lines.append(f"run {event.workflow_id}")
    return "\n".join(lines)


def atom_feed(*, title: str, feed_id: str, self_url: str, base: str, events: list[NewsEvent]) -> bytes:
    """An Atom 1.0 document of `events` (newest first)."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", TAG_PREFIX + feed_id)
    _add(feed, "title", title)
    _add(feed, "updated", _stamp(events[0].time if events else dt.datetime.now(dt.UTC)))
    _add(feed, "link", rel="self", href=self_url)
    _add(feed, "link", rel="alternate", href=base)
    _add(_add(feed, "author"), "name", "debflow")
    _add(feed, "generator", "debflow")
    for event in events:
        entry = _add(feed, "entry")
        _add(entry, "id", TAG_PREFIX + event.id)
        _add(entry, "title", event.summary)
        _add(entry, "updated", _stamp(event.time))
        _add(entry, "link", rel="alternate", href=_page(base, event))
        _add(entry, "category", term=str(event.type))
        _add(entry, "content", _content(event), type="text")
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


def _atom(body: bytes) -> Response:
    return Response(body, media_type=ATOM_TYPE, headers={"X-Content-Type-Options": "nosniff"})


def _refused(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(f"error: {message}\n", status_code=status)


@router.get("/feeds/all.atom", response_class=Response, summary="Atom feed of all news")
def all_news(request: Request, db: DbSession) -> Response:
    keep = context(request).settings.task_history_keep
    events = newest_news(db, keep=keep, limit=FEED_ENTRIES)
    base = str(request.base_url)
    return _atom(
        atom_feed(
            title="debflow: newsworthy results and confirmed regressions",
            feed_id="feeds/all",
            self_url=str(request.url),
            base=base,
            events=events,
        )
    )


@router.get("/feeds/packages/{name}.atom", response_class=Response, summary="Atom feed of one package")
def package_news(name: str, request: Request, db: DbSession) -> Response:
    if len(name) > NAME_MAX or not SOURCE_NAME.fullmatch(name):
        return _refused(400, f"malformed source package name {preview(name)!r}")
    if not db.execute(_KNOWN_PACKAGE, {"package": name}).scalar_one():
        return _refused(404, f"no results for source package {name!r}")
    keep = context(request).settings.task_history_keep
    events = newest_news(db, keep=keep, package=name, limit=FEED_ENTRIES)
    base = str(request.base_url)
    return _atom(
        atom_feed(
            title=f"debflow: {name}",
            feed_id=f"feeds/packages/{name}",
            self_url=str(request.url),
            base=base,
            events=events,
        )
    )
