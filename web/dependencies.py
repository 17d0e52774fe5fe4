"""What a request handler gets from the application: the command's Context and a database session."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from worker.context import Context


def context(request: Request) -> Context:
    """The Context `debflow serve` (or a test) made the application with (`app.state.context`)."""
    ctx: Context = request.app.state.context
    return ctx


def session(request: Request) -> Iterator[Session]:
    """One read-only session per request, closed when the response is sent."""
    with context(request).sessions() as db:
        yield db
