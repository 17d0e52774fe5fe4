"""`debflow keys add|list|revoke` (the debci API's keys) and `debflow reject-list add|remove|list`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from activities.services import api_keys, reject_list
from client.command_support import console, context_of, fail
from models.debci import BadRequest
from worker.connect import NotConfigured

if TYPE_CHECKING:  # the engine is made by the composition root (worker/context.py)
    from sqlalchemy.orm import Session, sessionmaker

keys_app = typer.Typer(help="Keys of the debci API (the Auth-Key header).", no_args_is_help=True)
reject_app = typer.Typer(help="Packages the debci API refuses to test.", no_args_is_help=True)


def _sessions(ctx: typer.Context) -> sessionmaker[Session]:
    try:
        return context_of(ctx).sessions
    except NotConfigured as e:
        raise fail(str(e)) from None


@keys_app.command("add")
def add_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="who uses the key (its Auth-User), e.g. britney")],
    admin: Annotated[bool, typer.Option("--admin", help="may retry and read anyone's jobs")] = False,
) -> None:
    """Make a key for NAME and print it once."""
    try:
        api_keys.check_key_name(name)
        key = api_keys.add_key(_sessions(ctx), name, admin=admin)
    except api_keys.KeyRefused as e:
        raise fail(str(e)) from None
    typer.echo(key)
    typer.echo(
        f"key of {name}{' (admin)' if admin else ''}: it is not stored, only its hash; keep it now", err=True
    )


@keys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """The keys' names (never the keys): admin or not, made and revoked when."""
    table = Table("name", "admin", "created", "revoked", show_edge=False)
    for k in api_keys.list_keys(_sessions(ctx)):
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
        table.add_row(k.name, "yes" if k.is_admin else "", f"{k.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)


@keys_app.command("revoke")
def revoke_key(ctx: typer.Context, name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Refuse NAME's key from now on."""
    try:
        api_keys.revoke_key(_sessions(ctx), name)
    except api_keys.KeyRefused as e:
        raise fail(str(e)) from None
    console.print(f"key {name} revoked", highlight=False)


SuiteOption = Annotated[str | None, typer.Option("--suite", help="only in this suite (default: any)")]
ArchOption = Annotated[str | None, typer.Option("--arch", help="only on this architecture (default: any)")]


@reject_app.command("add")
def reject_add(
    ctx: typer.Context,
    package: Annotated[str, typer.Argument(help="a source package name")],
    suite: SuiteOption = None,
    arch: ArchOption = None,
    reason: Annotated[str, typer.Option("--reason", help="why (shown in the API's reject list)")] = "",
) -> None:
    """Refuse test requests of PACKAGE (everywhere, or in one suite and/or architecture)."""
    architectures = context_of(ctx).settings.architectures
    try:
        added = reject_list.add_entry(
            _sessions(ctx),
            package,
            suite=suite,
            architecture=arch,
            reason=reason,
            architectures=architectures,
        )
    except BadRequest as e:
        raise fail(str(e)) from None
    where = f"suite {suite or 'any'}, architecture {arch or 'any'}"
    console.print(f"{package} ({where}): {'rejected' if added else 'already rejected'}", highlight=False)


@reject_app.command("remove")
def reject_remove(
    ctx: typer.Context,
    package: Annotated[str, typer.Argument(help="a source package name")],
    suite: SuiteOption = None,
    arch: ArchOption = None,
) -> None:
    """Remove one entry (the same --suite and --arch it was added with)."""
    if not reject_list.remove_entry(_sessions(ctx), package, suite=suite, architecture=arch):
        shown = f"{package[:100]!r} (suite {suite or 'any'}, architecture {arch or 'any'})"
        raise fail(f"no reject-list entry {shown}; `debflow reject-list list` shows them")
    console.print(f"{package}: removed from the reject list", highlight=False)


@reject_app.command("list")
def reject_show(ctx: typer.Context) -> None:
    """The reject list."""
    with _sessions(ctx)() as db:
        entries = reject_list.list_entries(db)
    table = Table("package", "suite", "architecture", "reason", show_edge=False)
    for e in entries:
        table.add_row(e.package, e.suite or "*", e.architecture or "*", e.reason)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(reject_app, name="reject-list")
