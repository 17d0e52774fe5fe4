"""The `debflow` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.debian.dsc import SOURCE_NAME, VERSION, BadUpload
from activities.tools.process import ToolMissing
from client.api import (
    AlreadySubmitted,
    RetryRefused,
    close_run,
    get_report,
    retry_failed,
    submit_upload,
    workflow_url,
)
from client.campaigns import start_campaign, watch_campaign
from client.failures import RunEnded, describe_failure, raise_if_ended_badly, told_in_one_line
from client.output import make_console
from client.progress import follow
from client.reports import campaign_results, print_campaign_results, print_upload_report
from models import identifiers
from models.payloads import Check
from worker.connect import NotConfigured, connect_temporal, resolve
from worker.settings import Settings
from workflows.campaign import CampaignWorkflow

app = typer.Typer(
    help="Build, lint and test Debian uploads on Temporal.", no_args_is_help=True, add_completion=False
)
console = make_console()
errors = make_console(stderr=True)
# Imported suites may have any name of this shape (bookworm, test-libfoo1).
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")


def fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def dev(workers: Annotated[int, typer.Option(help="worker processes to start")] = 1) -> None:
    """Start the dev stack (Temporal + Web UI, PostgreSQL, workers) until Ctrl-C."""
    from worker.devstack import DevStack
    from worker.postgres import UnreachableDataDirectory

    settings = Settings()
    stack = DevStack(settings, workers=workers, say=console.print)
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
def demo(
    executor: Annotated[
        str, typer.Option(help="host (fast, trusted examples only) or unshare (isolated, needs a mirror)")
    ] = "host",
) -> None:
    """Start the dev stack, build and test the bundled examples, print reports, stop."""
    from client.demo import run_demo

    if executor == "host":
        settings = Settings(executor="host")
    elif executor == "unshare":
        settings = Settings(executor="unshare")
    else:
        raise fail(f"unknown executor {executor!r}: host or unshare")
    raise typer.Exit(run_demo(settings, console))


@app.command()
def submit(
    dsc: Annotated[Path, typer.Argument(help="the .dsc of the upload; its files beside it")],
    suite: Annotated[str, typer.Option(help="target suite")] = "bookworm",
    arch: Annotated[list[str] | None, typer.Option("--arch", help="architecture (repeatable)")] = None,
    check: Annotated[list[Check] | None, typer.Option("--check", help="checks to run (repeatable)")] = None,
    wait: Annotated[bool, typer.Option(help="show progress until done and print the report")] = False,
    again: Annotated[
        bool, typer.Option(help="start another run even if the same upload already has an open one")
    ] = False,
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
            again=again,
        )
        url = workflow_url(endpoints.ui_url, client.namespace, handle.id)
        console.print(f"started {handle.id}" + (f"  {url}" if url else ""))
        if not wait:
            return 0
        await follow(client, [handle.id], console)
        with told_in_one_line(handle.id):
            report = await get_report(client, handle.id)
        print_upload_report(report, console, url, settings)
        return 0 if report.result == "success" else 1

    raise typer.Exit(_run(go()))


@app.command()
def report(
    workflow_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the report as JSON (a campaign's: every target)")
    ] = False,
    every_target: Annotated[
        bool, typer.Option("--all", help="a campaign's table lists every target, not only notable ones")
    ] = False,
) -> None:
    """Print the report of an upload or a campaign (waits if it is still running)."""
    settings = Settings()

    async def go() -> int:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        kind = await _describe(client, workflow_id)
        if kind == "Campaign":
            with told_in_one_line(workflow_id):
                campaign = await client.get_workflow_handle_for(CampaignWorkflow.run, workflow_id).result()
            if as_json:
                print(campaign_results(campaign, settings).model_dump_json(indent=2))
            else:
                print_campaign_results(
                    campaign, console, endpoints.ui_url, client.namespace, settings, every_target=every_target
                )
            return 0
        with told_in_one_line(workflow_id):
            result = await get_report(client, workflow_id)
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            url = workflow_url(endpoints.ui_url, client.namespace, workflow_id)
            print_upload_report(result, console, url, settings)
        return 0

    raise typer.Exit(_run(go()))


@app.command()
def retry(
    workflow_id: str,
    wait: Annotated[bool, typer.Option(help="show progress until done and print the report")] = True,
) -> None:
    """Re-run the failed and errored tasks of a finished upload run (and the tasks depending on them)."""
    settings = Settings()

    async def go() -> int:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        if await _describe(client, workflow_id) != "UploadPipeline":
            raise LookupFailed(f"{workflow_id} is not an upload run")
        await retry_failed(client, settings, workflow_id)
        console.print(f"{workflow_id}: re-running its failed tasks")
        if not wait:
            return 0
        await follow(client, [workflow_id], console)
        with told_in_one_line(workflow_id):
            report = await get_report(client, workflow_id)
        url = workflow_url(endpoints.ui_url, client.namespace, workflow_id)
        print_upload_report(report, console, url, settings)
        return 0 if report.result == "success" else 1

    raise typer.Exit(_run(go()))


@app.command()
def close(workflow_id: str) -> None:
    """Close the retry window of an upload run that keeps one (runs started before runs ended with their
    tasks); the run ends with its report."""
    settings = Settings()

    async def go() -> int:
        client = await connect_temporal(resolve(settings).temporal)
        await _describe(client, workflow_id)
        closed = await close_run(client, workflow_id)
        console.print(f"{workflow_id}: {'closed' if closed else 'already ended'}")
        return 0

    raise typer.Exit(_run(go()))


@app.command()
def watch(workflow_id: str) -> None:
    """Follow a running upload or campaign with progress bars until it closes."""
    settings = Settings()

    async def go() -> int:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        kind = await _describe(client, workflow_id)
        if kind == "Campaign":
            await watch_campaign(client, workflow_id, console)
        else:
            await follow(client, [workflow_id], console)
        await raise_if_ended_badly(client, workflow_id)
        return 0

    raise typer.Exit(_run(go()))


@app.command()
def campaign(
    trigger: Annotated[
        str | None,
        typer.Argument(help="simulated campaigns: the source package whose reverse dependencies are tested"),
    ] = None,
    upload: Annotated[
        str | None,
        typer.Option(help="real campaigns: the UploadPipeline run whose built binaries are tested"),
    ] = None,
    suite: Annotated[
        str | None, typer.Option(help="imported suite to plan against (default: the upload's, or bookworm)")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="version of the simulated upload (default: 0+simulated)")
    ] = None,
    binary: Annotated[list[str] | None, typer.Option("--binary", help="binaries of the upload")] = None,
    arch: Annotated[
        list[str] | None,
        typer.Option("--arch", help="architecture (repeatable; default: amd64, or what the upload built)"),
    ] = None,
    simulated: Annotated[
        bool, typer.Option(help="SIMULATED executor: invented outcomes, for load tests")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the simulated executor")] = 0,
    duration_scale: Annotated[float, typer.Option(help="simulated test durations (0: instant)")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="targets per batch workflow (at most 500)")] = 500,
    limit: Annotated[
        int | None,
        typer.Option(
            help="test only N targets per architecture: the trigger's own, then the first others", min=1
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow it and print the report")] = False,
) -> None:
    """Test every reverse dependency of an upload against it and against the suite."""
    from client.campaigns import NotBuilt, campaign_for_upload
    from models.campaign import CampaignInput, Simulation

    settings = Settings()
    if simulated == (upload is not None):
        raise fail(
            "name the upload run whose binaries to test (--upload RUN_ID), or run a SIMULATED campaign "
            "(TRIGGER --simulated)"
        )
    if simulated and trigger is None:
        raise fail("a simulated campaign needs the TRIGGER source package")
    if upload is not None and (trigger or version or binary):
        raise fail("with --upload, the trigger, its version and binaries come from the upload run")
    if trigger is not None and not SOURCE_NAME.match(trigger):
        raise fail(f"invalid source package name {trigger!r}")
    if version is not None and not VERSION.match(version):
        raise fail(f"invalid version {version!r}")
    for name in binary or []:
        if not SOURCE_NAME.match(name):
            raise fail(f"invalid binary package name {name!r}")
    try:
        identifiers.check_package(trigger or "", version or "", binary or [])
        if upload is not None:
            identifiers.check_workflow_id(upload)
    except identifiers.TooLong as e:
        raise fail(str(e)) from None
    if suite is not None and not SUITE_NAME.match(suite):
        raise fail(f"invalid suite name {suite!r}")
    for name in arch or []:
        if name not in settings.architectures:
            raise fail(f"unknown architecture {name!r}")

    async def go() -> int:
        endpoints = resolve(settings)
        client = await connect_temporal(endpoints.temporal)
        if upload is not None:
            try:
                with told_in_one_line(upload):
                    params = await campaign_for_upload(
                        client, upload, suite=suite, batch_size=batch_size, target_limit=limit
                    )
            except NotBuilt as e:
                raise fail(str(e)) from None
            except RPCError as e:
                raise fail(f"upload run {upload}: {e}") from None
            if arch:
                params.architectures = [a for a in params.architectures if a in arch]
        else:
            assert trigger is not None
            params = CampaignInput(
                trigger_source=trigger,
                trigger_version=version or "0+simulated",
                trigger_binaries=binary or [],
                suite=suite or "bookworm",
                architectures=arch or ["amd64"],
                batch_size=batch_size,
                target_limit=limit,
                simulation=Simulation(seed=seed, duration_scale=duration_scale),
            )
        handle = await start_campaign(
            client, params, settings.task_queue, priority_key=settings.campaign_priority
        )
        url = workflow_url(endpoints.ui_url, client.namespace, handle.id)
        console.print(f"started {handle.id}" + (f"  {url}" if url else ""))
        if not wait:
            return 0
        await watch_campaign(client, handle.id, console)
        with told_in_one_line(handle.id):
            report = await handle.result()
        print_campaign_results(report, console, endpoints.ui_url, client.namespace, settings)
        return 0

    raise typer.Exit(_run(go()))


@app.command()
def worker(
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

    settings = Settings()
    try:
        only = parse(settings, capabilities)
    except ValueError as e:
        raise fail(str(e)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        main_sync(settings, task_queue, only)
    except NotConfigured as e:
        raise fail(str(e)) from None


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Temporal, workers and backlog per queue, running campaigns, failures of the last hour, database."""
    from client.status import collect_status, print_status
    from models.db import make_engine
    from worker.connect import resolve_database

    settings = Settings()

    async def go() -> int:
        client, error = None, ""
        try:
            temporal = resolve(settings).temporal
            client = await asyncio.wait_for(connect_temporal(temporal), timeout=10)
        except NotConfigured as e:
            error = str(e)
        except Exception as e:  # unreachable is a status, not a crash
            error = f"{temporal.get('target_host')}: {type(e).__name__}: {e}".splitlines()[0]
        engine = None
        with contextlib.suppress(NotConfigured):
            engine = make_engine(resolve_database(settings), pool_size=1)
        try:
            found = await collect_status(
                client, engine, settings.task_queue, settings.architectures, temporal_error=error
            )
        finally:
            if engine is not None:
                engine.dispose()
        if as_json:
            print(found.model_dump_json(indent=2))
        else:
            print_status(found, console)
        return 0 if found.temporal_reachable and found.database is not None else 1

    raise typer.Exit(_run(go()))


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


async def _describe(client: Client, workflow_id: str) -> str:
    """The workflow type of a run; one clear error when there is no such run."""
    identifiers.check_workflow_id(workflow_id)
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).workflow_type
    except RPCError as e:
        if e.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise LookupFailed(f"no run with workflow id {identifiers.preview(workflow_id, 200)!r}") from None
        raise


class LookupFailed(LookupError):
    """A workflow id, suite or package that does not exist."""


def _run(coroutine: object) -> int:
    try:
        return int(asyncio.run(coroutine))  # type: ignore[arg-type]
    except (
        BadUpload,
        ToolMissing,
        NotConfigured,
        AlreadySubmitted,
        LookupFailed,
        RetryRefused,
        identifiers.TooLong,
    ) as e:
        raise fail(str(e)) from None
    except RunEnded as e:
        raise fail(str(e), code=1) from None
    except WorkflowFailureError as e:  # a run's result awaited without its id at hand
        raise fail(describe_failure("the run", e), code=1) from None
    except WorkflowUpdateFailedError as e:
        raise fail(f"retry refused: {e.cause.message if e.cause else e}") from None  # type: ignore[attr-defined]
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise fail(f"not found: {e.message}") from None
        raise
    except KeyboardInterrupt:
        return 130


def main() -> None:
    """The console script: exits without interpreter finalisation, which can abort (SIGABRT) while
    the Temporal client's native threads still run."""
    try:
        app()
        code: object = 0
    except SystemExit as e:
        code = e.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


import client.data_commands  # noqa: E402,F401
from client import results_commands, suite_commands  # noqa: E402,F401
