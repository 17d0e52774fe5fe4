"""`debflow rebuild`: build every build-dependent of an upload (or the whole suite) with and without it."""

from __future__ import annotations

from typing import Annotated

import typer
from temporalio.service import RPCError

from client.api import workflow_url
from client.campaign_commands import check_trigger_arguments
from client.campaigns import start_campaign, watch_campaign
from client.command_support import console, context_of, fail, run
from client.failures import told_in_one_line
from client.reports import print_campaign_results

# The trigger's name of a simulated archive rebuild that names none (`--all --simulated`).
ARCHIVE_TRIGGER = "archive"


def rebuild(
    ctx: typer.Context,
    trigger: Annotated[
        str | None,
        typer.Argument(help="simulated rebuilds: the source package whose build-dependents are rebuilt"),
    ] = None,
    upload: Annotated[
        str | None,
        typer.Option(help="the UploadPipeline run whose built binaries the new builds use"),
    ] = None,
    all_sources: Annotated[
        bool, typer.Option("--all", help="rebuild every source of the suite (an archive rebuild)")
    ] = False,
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
    duration_scale: Annotated[float, typer.Option(help="simulated build durations (0: instant)")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="targets per batch workflow (at most 500)")] = 500,
    limit: Annotated[
        int | None, typer.Option(help="rebuild only the first N targets per architecture", min=1)
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow it and print the report")] = False,
) -> None:
    """Build each source that build-depends on an upload twice: with its binaries and against the suite."""
    from client.campaigns import NotBuilt, campaign_for_upload
    from models.campaign import CampaignInput, CampaignKind, Simulation

    context = context_of(ctx)
    settings = context.settings
    if simulated == (upload is not None):
        raise fail(
            "name the upload run whose binaries to build with (--upload RUN_ID), or run a SIMULATED "
            "rebuild (TRIGGER --simulated, or --all --simulated)"
        )
    if simulated and trigger is None and not all_sources:
        raise fail("a simulated rebuild needs the TRIGGER source package, or --all")
    check_trigger_arguments(
        upload=upload,
        trigger=trigger,
        version=version,
        binary=binary,
        suite=suite,
        arch=arch,
        architectures=settings.architectures,
    )

    async def go() -> int:
        client = await context.temporal()
        if upload is not None:
            try:
                with told_in_one_line(upload):
                    params = await campaign_for_upload(
                        client,
                        upload,
                        suite=suite,
                        batch_size=batch_size,
                        target_limit=limit,
                        kind=CampaignKind.REBUILD,
                        all_sources=all_sources,
                    )
            except NotBuilt as e:
                raise fail(
                    str(e).replace("test its reverse dependencies", "rebuild its build-dependents")
                ) from None
            except RPCError as e:
                raise fail(f"upload run {upload}: {e}") from None
            if arch:
                built = params.architectures
                params.architectures = [a for a in built if a in arch]
                if not params.architectures:
                    raise fail(f"upload run {upload} built {' '.join(built)}, none of {' '.join(arch)}")
        else:
            params = CampaignInput(
                trigger_source=trigger or ARCHIVE_TRIGGER,
                trigger_version=version or "0+simulated",
                trigger_binaries=binary or [],
                suite=suite or "bookworm",
                architectures=arch or ["amd64"],
                batch_size=batch_size,
                target_limit=limit,
                simulation=Simulation(seed=seed, duration_scale=duration_scale),
                kind=CampaignKind.REBUILD,
                all_sources=all_sources,
            )
        handle = await start_campaign(
            client, params, settings.task_queue, priority_key=settings.campaign_priority
        )
        url = workflow_url(context.ui_url, client.namespace, handle.id)
        console.print(f"started {handle.id}" + (f"  {url}" if url else ""))
        if not wait:
            return 0
        await watch_campaign(client, handle.id, console)
        with told_in_one_line(handle.id):
            report = await handle.result()
        print_campaign_results(report, console, context.ui_url, client.namespace, context)
        return 0

    raise typer.Exit(run(go()))
