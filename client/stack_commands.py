"""`debflow dev`, `demo`, `worker`, `status` and `migrate`: running and inspecting the stack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Annotated

import typer

from client.command_support import console, context_of, fail, run
from worker.connect import NotConfigured


def dev(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(help="worker processes to start")] = 1,
    site_port: Annotated[int, typer.Option(min=1, max=65535, help="port of the results site")] = 8080,
) -> None:
    """Start the dev stack (Temporal + Web UI, PostgreSQL, workers, results site) until Ctrl-C."""
    from client.serve_commands import start_site_process
    from worker.devstack import DevStack
    from worker.postgres import UnreachableDataDirectory

    settings = context_of(ctx).settings
    stack = DevStack(settings, workers=workers, say=console.print)
    site = None
    try:
        try:
            stack.start()
        except UnreachableDataDirectory as e:
            raise fail(str(e)) from None
        console.print(
            f"{workers} worker(s) polling task queue {settings.task_queue!r}. Ctrl-C stops everything."
        )
        for pid, url in stack.metrics_urls.items():
            console.print(f"worker {pid} metrics: {url}")
        site = start_site_process(settings, site_port)
        if site is None:
            console.print(f"results site not started: port {site_port} is taken (see --site-port)")
        else:
            console.print(f"Results site {site[1]}")
        stopped = False

        def stop(*_: object) -> None:
            nonlocal stopped
            stopped = True

        # Explicit handlers: a shell's background job starts with SIGINT ignored.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopped:
            for pid in stack.restart_dead_workers():
                console.print(f"worker {pid} exited; started another")
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        if site is not None:
            site[0].terminate()
            site[0].wait(timeout=30)
        stack.stop()


def demo(
    ctx: typer.Context,
    executor: Annotated[
        str, typer.Option(help="host (fast, trusted examples only) or unshare (isolated, needs a mirror)")
    ] = "host",
) -> None:
    """Start the dev stack, build and test the bundled examples, print reports, stop."""
    from client.demo import run_demo
    from worker.postgres import UnreachableDataDirectory

    if executor not in ("host", "unshare"):
        raise fail(f"unknown executor {executor!r}: host or unshare")
    # The option wins over DEBFLOW_EXECUTOR; every other setting is the invocation's.
    settings = context_of(ctx).settings.model_copy(update={"executor": executor})
    try:
        code = run_demo(settings, console)
    except UnreachableDataDirectory as e:  # refused before anything started
        raise fail(str(e)) from None
    raise typer.Exit(code)


def worker(
    ctx: typer.Context,
    task_queue: Annotated[
        str | None, typer.Option(help="control task queue; the capability queues are named from it")
    ] = None,
    capabilities: Annotated[
        str | None,
        typer.Option(
            help="what this process polls, comma-separated: control, lintian, build[:ARCH], test[:ARCH], "
            "or all (default: DEBFLOW_CAPABILITIES, else all)"
        ),
    ] = None,
) -> None:
    """Run one more worker process (any host that reaches Temporal, PostgreSQL and the store)."""
    from worker.main import capabilities as parse
    from worker.main import main_sync

    settings = context_of(ctx).settings
    try:
        only = parse(settings, capabilities)
    except ValueError as e:
        raise fail(str(e)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        main_sync(settings, task_queue, only)
    except NotConfigured as e:
        raise fail(str(e)) from None


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Temporal, workers and backlog per queue, running campaigns, failures of the last hour, database."""
    from client.status import collect_status, print_status

    context = context_of(ctx)
    settings = context.settings

    async def go() -> int:
        client, error = None, ""
        try:
            client = await asyncio.wait_for(context.temporal(), timeout=10)
        except NotConfigured as e:
            error = str(e)
        except Exception as e:  # unreachable is a status, not a crash
            error = f"{context.temporal_arguments.get('target_host')}: {type(e).__name__}: {e}".splitlines()[
                0
            ]
        engine = None
        with contextlib.suppress(NotConfigured):
            engine = context.engine
        found = await collect_status(
            client, engine, settings.task_queue, settings.architectures, temporal_error=error
        )
        if as_json:
            print(found.model_dump_json(indent=2))
        else:
            print_status(found, console)
        return 0 if found.temporal_reachable and found.database is not None else 1

    raise typer.Exit(run(go()))


def migrate(ctx: typer.Context) -> None:
    """Apply the database migrations to the configured database."""
    from models.migrate import upgrade

    try:
        upgrade(context_of(ctx).database_url)
    except NotConfigured as e:
        raise fail(str(e)) from None
    console.print("database schema is up to date")
