"""Webhooks end to end: the notifier on the dev server, real HTTP receivers, the real database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.server
import json
import re
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle

from models.notify_payloads import NewsCursor, idempotency_key
from tests.test_feeds import package, record, regression
from tests.test_pipeline import replay, worker_with
from worker.notifier_start import ensure_notifier
from worker.settings import Settings
from workflows.notifier import NotifierWorkflow

SECRET = "test-secret-Ünïcode"
# Conditions are waited for, never timed: this only stops a test that would otherwise hang.
PATIENCE_S = 180


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """An HTTP server in a thread that records every POST; it answers `failures` times 500 first."""

    port: int
    failures: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    requests: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def of(self, source: str) -> list[Delivery]:
        return [d for d in list(self.deliveries) if d.event["package"] == source]


@contextlib.contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests += 1
            if receiver.failures > 0:
                receiver.failures -= 1
                self.send_response(500)
            else:
                receiver.deliveries.append(Delivery(dict(self.headers.items()), body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until(condition: Callable[[], Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE_S
    while True:
        met = await condition() if asyncio.iscoroutinefunction(condition) else condition()
        if met:
            return
        assert loop.time() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def notifier(
    client: Client, settings: Settings, urls: list[str]
) -> AsyncIterator[WorkflowHandle[NotifierWorkflow, None]]:
    webhooks = settings.model_copy(
        update={
            "webhook_urls": urls,
            "webhook_secret": SecretStr(SECRET),
            "notify_poll_interval_s": 0.5,
            "webhook_retry_max_interval_s": 1,
        }
    )
    async with worker_with(client, webhooks):
        handle = await ensure_notifier(client, webhooks, workflow_id=f"notifier-{uuid.uuid4().hex[:8]}")

        async def started() -> bool:
            return await handle.query(NotifierWorkflow.cursor) is not None

        await until(started, "the notifier's first poll")
        try:
            yield handle
        finally:
            await handle.terminate("test over")


def verify(delivery: Delivery, url: str) -> dict[str, Any]:
    """What a receiver does (docs/notifications.md): check the signature, then trust the body."""
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery.headers["X-Debflow-Signature"], expected)
    event = delivery.event
    assert delivery.headers["Idempotency-Key"] == idempotency_key(event["id"], url)
    assert delivery.headers["X-Debflow-Event"] == event["type"]
    assert delivery.headers["Content-Type"] == "application/json"
    return event


async def test_news_is_posted_signed_with_a_stable_idempotency_key(
    client: Client, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    before = package("before")
    record(sessions, before, ["failure"])  # stored before the notifier starts: never sent
    with serving(Receiver(free_port())) as receiver:
        async with notifier(client, settings, [receiver.url]) as handle:
            source = package("hook")
            record(sessions, source, ["success", "success", "failure"])
            regression(sessions, source, ["<script>alert(1)</script>"])
            await until(lambda: len(receiver.of(source)) >= 3, "three events")
            events = [verify(d, receiver.url) for d in receiver.of(source)]
            await replay(client, handle.id, "notifier")
    by_type = sorted((e["type"], e["previous_result"] or "", e["result"]) for e in events)
    assert by_type == [
        ("confirmed-regression", "PASS", "FAIL"),
        ("newsworthy-result", "", "success"),
        ("newsworthy-result", "success", "failure"),
    ]
    regressed = next(e for e in events if e["type"] == "confirmed-regression")
    assert regressed["regressed_tests"] == ["<script>alert(1)</script>"] and regressed["suite"] == "sid"
    assert len({e["id"] for e in events}) == 3  # each once: no duplicates on a healthy receiver
    assert receiver.of(before) == []
    # A tampered body does not verify.
    forged = Delivery(receiver.of(source)[0].headers, receiver.of(source)[0].body.replace(b"sid", b"sie"))
    with pytest.raises(AssertionError):
        verify(forged, receiver.url)


async def test_a_receiver_that_is_down_gets_every_event_later(
    client: Client, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    down = Receiver(free_port())  # nothing listens yet: connection refused
    failing = Receiver(free_port(), failures=3)  # answers 500 three times
    with serving(failing):
        async with notifier(client, settings, [down.url, failing.url]) as handle:
            source = package("later")
            record(sessions, source, ["success", "failure", "success"])
            await until(lambda: len(failing.of(source)) >= 3, "the failing receiver's recovery")
            delivery = client.get_workflow_handle(
                f"webhook-{idempotency_key(json.loads(failing.of(source)[0].body)['id'], down.url)}"
            )

            async def retried() -> bool:
                described = await delivery.describe()
                pending = described.raw_description.pending_activities
                return bool(pending) and pending[0].attempt >= 3

            await until(retried, "the down receiver's delivery to be retried")
            with serving(down):
                await until(lambda: len(down.of(source)) >= 3, "the down receiver's events once it is up")
                await replay(client, delivery.id, "webhook-delivery")
            cursor = await handle.query(NotifierWorkflow.cursor)
    assert isinstance(cursor, NewsCursor) and cursor.history_id > 0
    assert failing.requests >= 6
    for receiver in (down, failing):
        events = [verify(d, receiver.url) for d in receiver.of(source)]
        assert sorted(e["result"] for e in events) == ["failure", "success", "success"]
        assert len({e["id"] for e in events}) == 3


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"DEBFLOW_WEBHOOK_URLS": '["http://127.0.0.1:9/hook"]'}, "DEBFLOW_WEBHOOK_SECRET is not"),
        (
            {"DEBFLOW_WEBHOOK_URLS": '["ftp://example.org/hook"]', "DEBFLOW_WEBHOOK_SECRET": "s"},
            "not an http(s) URL",
        ),
    ],
)
def test_webhook_settings_refuse_unsigned_or_odd_urls(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()
