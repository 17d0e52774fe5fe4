"""`debflow campaign`: test every reverse dependency of an upload, real or simulated."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from temporalio.service import RPCError

from activities.debian.dsc import SOURCE_NAME, VERSION
from client.api import workflow_url
from client.campaigns import start_campaign, watch_campaign
from client.command_support import console, context_of, fail, run
from client.failures import told_in_one_line
from client.reports import print_campaign_results
from models import identifiers
from models.campaign import Pin
from models.debci import BadRequest, parse_pins
from worker.context import Context

# Imported suites may have any name of this shape (bookworm, test-libfoo1).
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")


def campaign(
    ctx: typer.Context,
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
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="test this source (repeatable) instead of the reverse dependencies"),
    ] = None,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            "--pin",
            help="the new side takes these packages from another imported suite: 'src:foo,bar=SUITE' "
            "(repeatable; with no --upload the first pinned package is the trigger)",
        ),
    ] = None,
    fresh_references: Annotated[
        bool,
        typer.Option(
            "--fresh-references",
            help="run each target's reference for its exact version and suite state, never reusing an "
            "earlier version's",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="follow it and print the report")] = False,
) -> None:
    """Test every reverse dependency of an upload (or the given targets) against it and against the suite."""
    from client.campaigns import NotBuilt, campaign_for_upload
    from models.campaign import CampaignInput, Simulation

    context = context_of(ctx)
    settings = context.settings
    pins = parse_pin_options(pin or [])
    for name in target or []:
        if not SOURCE_NAME.match(name):
            raise fail(f"invalid target {name!r}: a source package name")
    if simulated and (upload is not None or pins):
        raise fail("a SIMULATED campaign takes no --upload and no --pin")
    if not simulated and upload is None and not pins:
        raise fail(
            "name the upload run whose binaries to test (--upload RUN_ID), pin packages from another "
            "suite (--pin 'src:NAME=SUITE'), or run a SIMULATED campaign (TRIGGER --simulated)"
        )
    if pins and upload is None and (trigger or version or binary):
        raise fail("with --pin and no --upload, the trigger is the first pinned package: give no TRIGGER")
    if simulated and trigger is None:
        raise fail("a simulated campaign needs the TRIGGER source package")
    check_trigger_arguments(
        upload=upload,
        trigger=trigger,
        version=version,
        binary=binary,
        suite=suite,
        arch=arch,
        architectures=settings.architectures,
    )

    # Checked in the database before anything connects to Temporal: one line for a suite not imported or
    # a package it lacks.
    pinned_trigger = check_in_suites(
        context,
        pins=pins,
        targets=target or [],
        suite=suite or (None if upload else "bookworm"),  # an upload's suite is known once connected
        architectures=arch or ["amd64"],
    )

    async def go() -> int:
        client = await context.temporal()
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
                built = params.architectures
                params.architectures = [a for a in built if a in arch]
                if not params.architectures:
                    raise fail(f"upload run {upload} built {' '.join(built)}, none of {' '.join(arch)}")
        elif pins:
            params = CampaignInput(
                trigger_source=pinned_trigger[0],
                trigger_version=pinned_trigger[1],
                suite=suite or "bookworm",
                architectures=arch or ["amd64"],
                batch_size=batch_size,
                target_limit=limit,
            )
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
        params.targets = sorted(set(target)) if target else None
        params.pins = pins
        params.fresh_references = fresh_references
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


def parse_pin_options(values: list[str]) -> list[Pin]:
    """`--pin 'src:foo,bar=SUITE'` options as debci's pin-packages (models.debci.parse_pins)."""
    pairs: list[object] = []
    for value in values:
        names, equals, pin_suite = value.rpartition("=")
        if not equals or not names:
            raise fail(f"invalid --pin {value[:60]!r}: PACKAGES=SUITE, e.g. 'src:foo,bar=unstable'")
        pairs.append([names, pin_suite])
    try:
        return parse_pins(pairs)
    except BadRequest as e:
        raise fail(str(e)) from None


def check_in_suites(
    context: Context, *, pins: list[Pin], targets: list[str], suite: str | None, architectures: list[str]
) -> tuple[str, str]:
    """The pins' suites and packages and the targets, looked up in the database; the first pinned
    package and its version (the trigger of a campaign without upload), or ("", "") without pins."""
    if not pins and not targets:
        return "", ""
    from activities.campaigns.pinned import BadPin, check_pins, given_targets
    from worker.connect import NotConfigured

    try:
        sessions = context.sessions
        if targets and suite is not None:
            with sessions() as session:
                for architecture in architectures:
                    given_targets(session, suite, targets, architecture)
        return check_pins(sessions, pins, architectures) if pins else ("", "")
    except (BadPin, LookupError, NotConfigured) as e:
        raise fail(str(e)) from None


def check_trigger_arguments(
    *,
    upload: str | None,
    trigger: str | None,
    version: str | None,
    binary: list[str] | None,
    suite: str | None,
    arch: list[str] | None,
    architectures: list[str],
) -> None:
    """What `campaign` and `rebuild` are told about the trigger, checked before anything connects: one
    `error:` line for the first problem."""
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
        if name not in architectures:
            raise fail(f"unknown architecture {name!r}")
