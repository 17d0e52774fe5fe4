"""`debflow serve`: the read-only results site (web/) on uvicorn; `debflow dev` runs it as a process too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Annotated

import typer

from client.command_support import console, context_of, fail
from worker.connect import NotConfigured
from worker.context import Context
from worker.settings import Settings

DEFAULT_PORT = 8080


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = DEFAULT_PORT,
    pool: Annotated[int, typer.Option(min=1, max=100, help="database connections kept per process")] = 10,
    workers: Annotated[int, typer.Option(min=1, max=64, help="server processes (one per core)")] = 1,
) -> None:
    """Serve the results site (pages, JSON under /api, logs) and debci's API (/api/v1) until Ctrl-C."""
    import uvicorn

    from web.app import create_app

    # A server keeps its connections: its own Context, with a pool, over the invocation's settings.
    context = Context(context_of(ctx).settings, pool_size=pool)
    try:
        app = create_app(context)  # also when workers > 1: a missing database is told here, once
    except NotConfigured as e:
        raise fail(str(e)) from None
    console.print(f"results site at {site_url(host, port)}")
    try:
        if workers == 1:
            uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
        else:
            # Each process makes its own application (its own pool and Temporal client) from the
            # environment, as this invocation read its settings.
            os.environ["DEBFLOW_SITE_POOL"] = str(pool)
            uvicorn.run(
                "web.app:app_from_environment",
                factory=True,
                workers=workers,
                host=host,
                port=port,
                log_level="info",
                access_log=False,
            )
    finally:
        context.close()


def site_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}/"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_site_process(
    settings: Settings, port: int = DEFAULT_PORT
) -> tuple[subprocess.Popen[bytes], str] | None:
    """`debflow serve` as a child of `debflow dev` (it finds the dev stack the way every command does),
    logging to the stack's logs/site.log; None when the port is taken (another site, or another program)."""
    if not port_free(port):
        return None
    state = settings.state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    with open(state / "logs" / "site.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "client", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DEBFLOW_STATE_DIR": str(state)},
            start_new_session=True,
        )
    return process, site_url("127.0.0.1", port)


def register(app: typer.Typer) -> None:
    app.command()(serve)
