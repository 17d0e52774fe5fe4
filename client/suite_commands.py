"""`debflow import-suite` and `debflow rdeps`: Debian suites in the database, needing no Temporal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from activities.services.suites import import_suite_indices, reverse_dependencies
from activities.suites.suite_indices import SuiteImportError
from client.command_support import console, context_of, fail
from models import identifiers
from worker.connect import NotConfigured
from worker.context import Context

if TYPE_CHECKING:  # the engine is made by the composition root (worker/context.py)
    from sqlalchemy.orm import Session, sessionmaker


def _sessions(context: Context) -> sessionmaker[Session]:
    try:
        return context.sessions
    except NotConfigured as e:
        raise fail(str(e)) from None


def import_suite_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="suite name, e.g. bookworm")],
    sources: Annotated[Path, typer.Option(help="the Sources index (xz, gz or uncompressed)")],
    packages: Annotated[list[Path], typer.Option(help="a Packages index (repeatable)")],
    release: Annotated[
        Path | None,
        typer.Option(
            help="the suite's InRelease, or its Release with Release.gpg beside it: its signature is "
            "verified with gpgv, then the indices' SHA256 against it (required unless "
            "--insecure-unsigned-release)"
        ),
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option(
            help="OpenPGP keyring the Release must be signed by; kept with the suite for later imports "
            "(default: the kept one, else /usr/share/keyrings/debian-archive-keyring.gpg)"
        ),
    ] = None,
    insecure_unsigned_release: Annotated[
        bool,
        typer.Option(
            "--insecure-unsigned-release",
            help="INSECURE: do not verify the Release signature (nor need a Release at all); for a local "
            "test archive only",
        ),
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="mirror root the suite's pool files are fetched from by real campaign runs "
            "(default: kept from the last import, else DEBFLOW_MIRROR)"
        ),
    ] = None,
) -> None:
    """Load Debian indices into a suite; a re-import writes only what changed."""
    if mirror is not None and not re.fullmatch(r"(https?|file)://\S+", mirror):
        raise fail(f"--mirror must be an http(s):// or file:// URL, not {mirror!r}")
    if insecure_unsigned_release:
        typer.echo(
            f"warning: --insecure-unsigned-release: the Release signature of suite {name} is NOT verified; "
            "whoever can change these files decides what is tested",
            err=True,
        )
    context = context_of(ctx)
    sessions = _sessions(context)
    try:
        stats = import_suite_indices(
            sessions,
            name=name,
            sources=sources,
            packages=packages,
            release=release,
            keyring=keyring,
            insecure_unsigned_release=insecure_unsigned_release,
            mirror=mirror,
            default_mirror=context.settings.mirror,
        )
    except SuiteImportError as e:
        raise fail(str(e)) from None
    console.print(
        f"suite {name}: {stats.inserted} items added, {stats.removed} removed, {stats.unchanged} unchanged"
        f" in {stats.seconds:.1f} s; state {stats.state[:16]}"
        + (f"; Release signed by {stats.signed_by}" if stats.signed_by else ""),
        highlight=False,
        soft_wrap=True,
    )


def rdeps_command(
    ctx: typer.Context,
    suite: Annotated[str, typer.Argument(help="an imported suite")],
    source: Annotated[str, typer.Argument(help="the trigger source package, e.g. glibc")],
    arch: Annotated[str, typer.Option(help="architecture of the tests")] = "amd64",
    as_json: Annotated[bool, typer.Option("--json", help="print the targets as JSON")] = False,
) -> None:
    """List the source packages whose autopkgtests an upload of SOURCE triggers."""
    context = context_of(ctx)
    if arch not in context.settings.architectures:
        raise fail(f"unknown architecture {arch!r}")
    try:
        identifiers.check_name(source)
    except identifiers.TooLong as e:
        raise fail(str(e)) from None
    sessions = _sessions(context)
    try:
        found = reverse_dependencies(sessions, suite=suite, source=source, architecture=arch)
    except LookupError as e:
        raise fail(str(e)) from None
    version, targets = found.version, found.targets
    if as_json:
        print(
            json.dumps(
                [{"source": t.source, "version": t.version, "testsuite": t.testsuite} for t in targets]
            )
        )
        return
    for target in targets:
        print(f"{target.source}\t{target.version}\t{', '.join(target.testsuite)}")
    # On stderr, so that stdout stays one target per line for pipes.
    typer.echo(
        f"{len(targets)} source packages to test for {source} {version} on {arch} in {suite}", err=True
    )


def register(app: typer.Typer) -> None:
    app.command("import-suite")(import_suite_command)
    app.command("rdeps")(rdeps_command)
