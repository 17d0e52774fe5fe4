"""The `debflow` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from activities.dsc import BadUpload
from client.api import get_report, submit_upload, workflow_url
from client.progress import follow, print_report
from models.payloads import Check
from worker.connect import NotConfigured, connect_temporal, resolve
from worker.settings import Settings

app = typer.Typer(
    help="Build, lint and test Debian uploads on Temporal.", no_args_is_help=True, add_completion=False
)
console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def dev(workers: Annotated[int, typer.Option(help="worker processes to start")] = 1) -> None:
    """Start the dev stack (Temporal + Web UI, PostgreSQL, workers) until Ctrl-C."""
    from worker.devstack import DevStack

    settings = Settings()
    stack = DevStack(settings, workers=workers, say=console.print)
    try:
        stack.start()
        console.print(
            f"{workers} worker(s) polling task queue {settings.task_queue!r}. Ctrl-C stops everything."
        )
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
        stack.stop()


@app.command()
def demo() -> None:
    """Start the dev stack, build and test the bundled examples, print reports, stop."""
    from client.demo import run_demo

    raise typer.Exit(run_demo(Settings(), console))


@app.command()
def submit(
    dsc: Annotated[Path, typer.Argument(help="the .dsc of the upload; its files beside it")],
    suite: Annotated[str, typer.Option(help="target suite")] = "bookworm",
    arch: Annotated[list[str] | None, typer.Option("--arch", help="architecture (repeatable)")] = None,
    check: Annotated[list[Check] | None, typer.Option("--check", help="checks to run (repeatable)")] = None,
    wait: Annotated[bool, typer.Option(help="show progress until done and print the report")] = False,
) -> None:
    """Store an upload and start its pipeline."""
    settings = Settings()

    async def go() -> int:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        handle = await submit_upload(
            client,
            settings,
            endpoints.database_url,
            dsc,
            suite=suite,
            architectures=arch or ["amd64"],
            checks=check,
        )
        url = workflow_url(endpoints.ui_url, client.namespace, handle.id)
        console.print(f"started {handle.id}" + (f"  {url}" if url else ""))
        if not wait:
            return 0
        await follow(client, [handle.id], console)
        report = await handle.result()
        print_report(report, console, url)
        return 0 if report.result == "success" else 1

    raise typer.Exit(_run(go()))


@app.command()
def report(
    workflow_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Print the report of a run (waits if it is still running)."""
    settings = Settings()

    async def go() -> int:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        result = await get_report(client, workflow_id)
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            print_report(result, console, workflow_url(endpoints.ui_url, client.namespace, workflow_id))
        return 0

    raise typer.Exit(_run(go()))


@app.command()
def worker(
    task_queue: Annotated[str | None, typer.Option(help="task queue to poll")] = None,
) -> None:
    """Run one more worker process (any host that reaches Temporal, PostgreSQL and the store)."""
    from worker.main import main_sync

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        main_sync(Settings(), task_queue)
    except NotConfigured as e:
        raise fail(str(e)) from None


@app.command()
def migrate() -> None:
    """Apply the database migrations to the configured database."""
    from models.migrate import upgrade

    settings = Settings()
    try:
        upgrade(resolve(settings).database_url)
    except NotConfigured as e:
        raise fail(str(e)) from None
    console.print("database schema is up to date")


def _run(coroutine: object) -> int:
    try:
        return int(asyncio.run(coroutine))  # type: ignore[arg-type]
    except (BadUpload, NotConfigured) as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(app())
