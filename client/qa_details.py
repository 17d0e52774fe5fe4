"""What the opt-in QA checks found, under an upload's report: the debdiff summary per binary package and
the lintian tags the upload adds or resolves, blhc's tags, piuparts' verdict."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models.artifacts import BlhcData, DebdiffData, LintianTag, PiupartsData

LISTED = 10  # files per package and direction shown; the artifact's files have all of them


def print_debdiff(data: DebdiffData, console: Console, heading: str) -> None:
    if data.suite_version is None:
        console.print(f"{heading}: {escape(data.source)} is not in {escape(data.suite)}", highlight=False)
        return
    console.print(
        f"{heading}: against {escape(data.suite)} {escape(data.suite_version)}: source "
        f"{data.files_changed} files changed, +{data.lines_added}/-{data.lines_removed} lines",
        highlight=False,
    )
    table = Table("package", "status", "files", "control", show_edge=False, pad_edge=False, box=None)
    for binary in data.binaries:
        files = [f"+{f}" for f in binary.files_added[:LISTED]] + [
            f"-{f}" for f in binary.files_removed[:LISTED]
        ]
        more = len(binary.files_added) + len(binary.files_removed) - len(files)
        table.add_row(
            f"  {escape(binary.package)}",
            binary.status,
            escape("\n".join(files + ([f"… {more} more"] if more > 0 else []))),
            escape("\n".join(binary.control_changes)),
        )
    if data.binaries:
        console.print(table)
    _print_tags("  lintian tags new in the upload", data.new_tags, console)
    _print_tags("  lintian tags resolved", data.resolved_tags, console)


def _print_tags(heading: str, tags: list[LintianTag], console: Console) -> None:
    console.print(f"{heading}: {len(tags) or 'none'}", highlight=False)
    for tag in tags:
        line = f"    {tag.severity} {tag.package}: {tag.tag} {tag.note}".rstrip()
        console.print(escape(line), highlight=False)


def print_blhc(data: BlhcData, console: Console, heading: str) -> None:
    console.print(f"{heading}: {len(data.tags) or 'no'} tag(s)", highlight=False)
    for tag in data.tags:
        console.print(f"  {escape(tag)}", highlight=False)


def print_piuparts(data: PiupartsData, console: Console, heading: str) -> None:
    upgrade = f"upgrade from {data.upgrade_from}" if data.upgrade_from else "no upgrade test"
    console.print(f"{heading}: exit {data.exit_code}, {upgrade}: {escape(data.summary)}", highlight=False)
