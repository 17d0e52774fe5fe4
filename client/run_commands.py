"""`debflow submit`, `report`, `retry`, `close` and `watch`: upload runs (and campaigns' reports)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from client.api import close_run, get_report, retry_failed, submit_upload, workflow_url
from client.campaigns import watch_campaign
from client.command_support import LookupFailed, console, context_of, describe, fail, run
from client.failures import raise_if_ended_badly, told_in_one_line
from client.progress import follow
from client.reports import campaign_results, print_campaign_results, print_upload_report
from models.payloads import parse_checks
from workflows.campaign import CampaignWorkflow


def submit(
    ctx: typer.Context,
    dsc: Annotated[Path, typer.Argument(help="the .dsc of the upload; its files beside it")],
    suite: Annotated[str, typer.Option(help="target suite")] = "bookworm",
    arch: Annotated[list[str] | None, typer.Option("--arch", help="architecture (repeatable)")] = None,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            metavar="CHECK",
            help="a check to run (repeatable): build, lintian, autopkgtest (the default three), debdiff, "
            "blhc, piuparts; any check also runs the build",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="show progress until done and print the report")] = False,
    again: Annotated[
        bool, typer.Option(help="start another run even if the same upload already has an open one")
    ] = False,
) -> None:
    """Store an upload and start its pipeline."""
    try:
        # Before anything is stored or started: a misspelt check is one error, not a run without it.
        checks = parse_checks(check) if check else None
    except ValueError as e:
        raise fail(str(e)) from None
    context = context_of(ctx)

    async def go() -> int:
        client = await context.temporal()
        database_url = context.database_url  # both services found before anything is stored
        handle = await submit_upload(
            client,
            context.settings,
            database_url,
            dsc,
            suite=suite,
            architectures=arch or ["amd64"],
            checks=checks,
            again=again,
            store=context.store,
        )
        url = workflow_url(context.ui_url, client.namespace, handle.id)
        console.print(f"started {handle.id}" + (f"  {url}" if url else ""))
        if not wait:
            return 0
        await follow(client, [handle.id], console)
        with told_in_one_line(handle.id):
            report = await get_report(client, handle.id)
        print_upload_report(report, console, url, context)
        return 0 if report.result == "success" else 1

    raise typer.Exit(run(go()))


def report(
    ctx: typer.Context,
    workflow_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the report as JSON (a campaign's: every target)")
    ] = False,
    every_target: Annotated[
        bool, typer.Option("--all", help="a campaign's table lists every target, not only notable ones")
    ] = False,
) -> None:
    """Print the report of an upload or a campaign (waits if it is still running)."""
    context = context_of(ctx)

    async def go() -> int:
        client = await context.temporal()
        kind = await describe(client, workflow_id)
        if kind == "Campaign":
            with told_in_one_line(workflow_id):
                campaign = await client.get_workflow_handle_for(CampaignWorkflow.run, workflow_id).result()
            if as_json:
                print(campaign_results(campaign, context).model_dump_json(indent=2))
            else:
                print_campaign_results(
                    campaign, console, context.ui_url, client.namespace, context, every_target=every_target
                )
            return 0
        with told_in_one_line(workflow_id):
            result = await get_report(client, workflow_id)
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            url = workflow_url(context.ui_url, client.namespace, workflow_id)
            print_upload_report(result, console, url, context)
        return 0

    raise typer.Exit(run(go()))


def retry(
    ctx: typer.Context,
    workflow_id: str,
    wait: Annotated[bool, typer.Option(help="show progress until done and print the report")] = True,
) -> None:
    """Re-run the failed and errored tasks of a finished upload run (and the tasks depending on them)."""
    context = context_of(ctx)

    async def go() -> int:
        client = await context.temporal()
        if await describe(client, workflow_id) != "UploadPipeline":
            raise LookupFailed(f"{workflow_id} is not an upload run")
        await retry_failed(client, context.settings, workflow_id)
        console.print(f"{workflow_id}: re-running its failed tasks")
        if not wait:
            return 0
        await follow(client, [workflow_id], console)
        with told_in_one_line(workflow_id):
            report = await get_report(client, workflow_id)
        url = workflow_url(context.ui_url, client.namespace, workflow_id)
        print_upload_report(report, console, url, context)
        return 0 if report.result == "success" else 1

    raise typer.Exit(run(go()))


def close(ctx: typer.Context, workflow_id: str) -> None:
    """Close the retry window of an upload run that keeps one (runs started before runs ended with their
    tasks); the run ends with its report."""
    context = context_of(ctx)

    async def go() -> int:
        client = await context.temporal()
        await describe(client, workflow_id)
        closed = await close_run(client, workflow_id)
        console.print(f"{workflow_id}: {'closed' if closed else 'already ended'}")
        return 0

    raise typer.Exit(run(go()))


def watch(ctx: typer.Context, workflow_id: str) -> None:
    """Follow a running upload or campaign with progress bars until it closes."""
    context = context_of(ctx)

    async def go() -> int:
        client = await context.temporal()
        kind = await describe(client, workflow_id)
        if kind == "Campaign":
            await watch_campaign(client, workflow_id, console)
        else:
            await follow(client, [workflow_id], console)
        await raise_if_ended_badly(client, workflow_id)
        return 0

    raise typer.Exit(run(go()))
