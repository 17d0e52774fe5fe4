"""`debflow import-suite` and `debflow rdeps`: Debian suites in the database, needing no Temporal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from activities.suites.suite import import_suite, reverse_dependency_targets, source_binaries, suite_mirror
from activities.suites.suite_indices import SuiteImportError
from client.cli import app, console, fail
from models import identifiers
from models.db import make_engine, make_sessionmaker
from worker.connect import NotConfigured, resolve_database
from worker.settings import Settings


def _database_url() -> str:
    try:
        return resolve_database(Settings())
    except NotConfigured as e:
        raise fail(str(e)) from None


@app.command("import-suite")
def import_suite_command(
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
    engine = make_engine(_database_url())
    sessions = make_sessionmaker(engine)
    try:
        if mirror is None and not suite_mirror(sessions, name):
            mirror = Settings().mirror
        stats = import_suite(
            sessions=sessions,
            name=name,
            sources=sources,
            packages=packages,
            release=release,
            keyring=keyring,
            insecure_unsigned_release=insecure_unsigned_release,
            mirror=mirror,
        )
    except SuiteImportError as e:
        raise fail(str(e)) from None
    finally:
        engine.dispose()
    console.print(
        f"suite {name}: {stats.inserted} items added, {stats.removed} removed, {stats.unchanged} unchanged"
        f" in {stats.seconds:.1f} s; state {stats.state[:16]}"
        + (f"; Release signed by {stats.signed_by}" if stats.signed_by else ""),
        highlight=False,
        soft_wrap=True,
    )


@app.command("rdeps")
def rdeps_command(
    suite: Annotated[str, typer.Argument(help="an imported suite")],
    source: Annotated[str, typer.Argument(help="the trigger source package, e.g. glibc")],
    arch: Annotated[str, typer.Option(help="architecture of the tests")] = "amd64",
    as_json: Annotated[bool, typer.Option("--json", help="print the targets as JSON")] = False,
) -> None:
    """List the source packages whose autopkgtests an upload of SOURCE triggers."""
    if arch not in Settings().architectures:
        raise fail(f"unknown architecture {arch!r}")
    try:
        identifiers.check_name(source)
    except identifiers.TooLong as e:
        raise fail(str(e)) from None
    engine = make_engine(_database_url())
    try:
        with make_sessionmaker(engine)() as session:
            version, binaries = source_binaries(session=session, suite=suite, source=source)
            targets = reverse_dependency_targets(
                session=session, suite=suite, binaries=binaries, architecture=arch, include_source=source
            )
    except LookupError as e:
        raise fail(str(e)) from None
    finally:
        engine.dispose()
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
