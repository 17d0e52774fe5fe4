"""`debflow log` and `debflow artifact show`: stored results read without SQL."""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from activities.storage.artifact_views import ArtifactView, ArtifactViews, NoLog
from client.check_details import print_check
from client.command_support import console, context_of, fail
from client.output import paged, print_text
from client.stored import artifact_views
from worker.connect import NotConfigured

artifact_app = typer.Typer(help="Stored artifacts: logs, packages, test results.", no_args_is_help=True)


def _views(ctx: typer.Context) -> ArtifactViews:
    try:
        return artifact_views(context_of(ctx))
    except NotConfigured as e:
        raise fail(str(e)) from None


def _artifact_id(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise fail(f"invalid artifact id {text!r}: a number, as the reports print them")
    return int(text)


def _find(views: ArtifactViews, artifact_id: int) -> ArtifactView:
    try:
        view = views.artifact(artifact_id)
    except SQLAlchemyError as e:
        raise fail(f"the database cannot be read: {str(e).splitlines()[0]}") from None
    if view is None:
        raise fail(f"no artifact {artifact_id}: it never existed or has expired")
    return view


def log(
    ctx: typer.Context, artifact_id: Annotated[str, typer.Argument(help="a log artifact id from a report")]
) -> None:
    """Print the log of a build, lintian or autopkgtest artifact (paged on a terminal)."""
    number = _artifact_id(artifact_id)  # a malformed id is told before any connection
    views = _views(ctx)
    view = _find(views, number)
    try:
        text = views.log_blob(view).read_text(errors="replace")
    except NoLog as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"the log of artifact {view.id} cannot be read: {e}") from None
    with paged(console):
        print_text(console, text)


@artifact_app.command("show")
def show(
    ctx: typer.Context,
    artifact_id: Annotated[str, typer.Argument(help="an artifact id from a report")],
    as_json: Annotated[
        bool, typer.Option("--json", help="metadata and files as JSON, without the log")
    ] = False,
    with_log: Annotated[bool, typer.Option("--log/--no-log", help="append the log, if it has one")] = True,
) -> None:
    """An artifact's metadata, data, files and relations, then its log (paged on a terminal)."""
    number = _artifact_id(artifact_id)  # a malformed id is told before any connection
    views = _views(ctx)
    view = _find(views, number)
    text = None
    if with_log and view.log_path is not None and not as_json:
        try:
            text = views.log_blob(view).read_text(errors="replace")
        except (NoLog, OSError) as e:
            text = f"({e})"
    if as_json:
        print(view.model_dump_json(indent=2))
        return
    with paged(console):
        _print_artifact(view)
        if text is not None:
            console.print(f"\n[bold]log[/] ({view.log_path}):")
            print_text(console, text)


def _print_artifact(view: ArtifactView) -> None:
    expires = f"{view.expires_at:%Y-%m-%d %H:%M %Z}" if view.expires_at else "never"
    console.print(f"[bold]artifact {view.id}[/]: {view.category}", highlight=False)
    console.print(f"  created {view.created_at:%Y-%m-%d %H:%M:%S %Z}, expires {expires}", highlight=False)
    if view.workflow_id:
        console.print(f"  made by {view.workflow_id} ({view.activity_id or 'no activity'})", highlight=False)
    console.print("[bold]data[/]:")
    detailed = view.category in ("debian:autopkgtest", "debian:lintian")
    for key, value in view.data.items():
        if detailed and key in ("tests", "tags"):
            continue  # shown as a table below
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        console.print(f"  {key}: {shown}", markup=False, highlight=False)
    if detailed:
        print_check(view.category, view.data, console, "[bold]results[/]")
    files = Table("file", "size", "sha256", show_edge=False, title="files", title_justify="left")
    for f in view.files:
        files.add_row(f.path + (" (log)" if f.path == view.log_path else ""), f"{f.size:,}", f.sha256)
    console.print(files)
    if view.relations:
        relations = Table("relation", "artifact", "category", show_edge=False)
        for r in view.relations:
            arrow = f"{r.type} →" if r.direction == "to" else f"← {r.type}"
            relations.add_row(arrow, str(r.artifact_id), r.category)
        console.print(relations)


def register(app: typer.Typer) -> None:
    app.command()(log)
    app.add_typer(artifact_app, name="artifact")
