"""The results site's application: routes, templates, security headers, one-line errors, and the count
of SQL statements each request made (`X-Debflow-SQL-Statements`, what tests and the benchmark read)."""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import event
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web import api, debci_api, feeds, pages
from web.api import CampaignSummary
from web.live import Cached, KeyedCache, LiveView
from web.queries_status import StatusData
from worker.context import Context

log = logging.getLogger("debflow.site")
HERE = Path(__file__).resolve().parent
STATEMENT_HEADER = "X-Debflow-SQL-Statements"
# Package-controlled text is only ever text: no script runs, nothing loads from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_statements: ContextVar[list[int] | None] = ContextVar("debflow_site_statements", default=None)


def _count_statement(*_: Any) -> None:
    counter = _statements.get()
    if counter is not None:
        counter[0] += 1


class SiteMiddleware:
    """Security headers and the statement count on every response; an unexpected error becomes one
    line and a 500 (logged with its traceback on the server, never sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counter = [0]
        token = _statements.set(counter)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers[STATEMENT_HEADER] = str(counter[0])
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("error serving %s", scope.get("path"))
            if started:
                raise
            response = PlainTextResponse("error: internal error; the server log has the details\n", 500)
            await response(scope, receive, send_with_headers)
        finally:
            _statements.reset(token)


def _one_line(status: int, message: str) -> PlainTextResponse:
    line = " ".join(message.split())[:300]
    return PlainTextResponse(f"error: {line}\n", status_code=status)


async def _http_error(request: Request, exc: Exception) -> PlainTextResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found":
        return _one_line(404, f"no page at {request.url.path[:100]}")
    response = _one_line(exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _validation_error(request: Request, exc: Exception) -> PlainTextResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
    return _one_line(400, f"invalid {where or 'request'}: {first.get('msg', 'malformed')}")


def app_from_environment() -> FastAPI:
    """The application of one `debflow serve --workers N` process: settings from the environment (as
    `debflow` reads them), its own connection pool (DEBFLOW_SITE_POOL, default 10)."""
    from worker.settings import Settings

    return create_app(Context(Settings(), pool_size=int(os.environ.get("DEBFLOW_SITE_POOL", "10"))))


def create_app(context: Context, *, live_ttl_s: float = 5.0, status_ttl_s: float = 30.0) -> FastAPI:
    """The application over one Context; raises worker.connect.NotConfigured without a database."""
    app = FastAPI(
        title="debflow results",
        description="Read-only results of debflow's uploads and campaigns; debci's API under /api/v1.",
        docs_url=None,  # Swagger's page loads scripts from a CDN, which the CSP refuses; the schema stays
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.context = context
    app.state.live = LiveView(context, ttl=live_ttl_s)
    app.state.status_cache = Cached[StatusData](status_ttl_s)
    app.state.campaign_summaries = KeyedCache[CampaignSummary](live_ttl_s)
    event.listen(context.engine, "before_cursor_execute", _count_statement)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(SiteMiddleware)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(debci_api.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(feeds.router)
    return app
