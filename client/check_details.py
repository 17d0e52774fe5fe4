"""What an upload's checks found, from their stored artifacts: autopkgtest per test, lintian by severity."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from activities.debian.parsing import SEVERITIES
from client import qa_details
from models.artifacts import AutopkgtestData, BlhcData, DebdiffData, LintianData, PiupartsData
from models.payloads import UploadReport

TEST_STYLE = {"PASS": "green", "FAIL": "red", "SKIP": "yellow", "FLAKY": "yellow"}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Lintian's own order, most severe first.
SEVERITY_ORDER = list(SEVERITIES.values())


def print_autopkgtest(data: AutopkgtestData, console: Console, heading: str) -> None:
    console.print(f"{heading}: exit {data.exit_code}, {len(data.tests)} test(s)", highlight=False)
    if not data.tests:
        return
    table = Table("test", "result", "details", show_edge=False, pad_edge=False, box=None)
    for name, test in data.tests.items():
        style = TEST_STYLE.get(test.status, "white")
        table.add_row(f"  {escape(name)}", f"[{style}]{test.status}[/]", escape(test.details))
    console.print(table)


def print_lintian(data: LintianData, console: Console, heading: str) -> None:
    ordered = sorted(data.counts, key=lambda s: SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else 99)
    counts = ", ".join(f"{data.counts[s]} {s}" for s in ordered) or "no tags"
    console.print(f"{heading}: {counts}", highlight=False)
    if not data.tags:
        return
    table = Table("severity", "package", "tag", "note", show_edge=False, pad_edge=False, box=None)
    by_severity = sorted(
        data.tags, key=lambda t: SEVERITY_ORDER.index(t.severity) if t.severity in SEVERITY_ORDER else 99
    )
    for tag in by_severity:
        style = SEVERITY_STYLE.get(tag.severity, "white")
        package = tag.package + ("" if tag.package_type == "binary" else f" {tag.package_type}")
        table.add_row(f"  [{style}]{tag.severity}[/]", escape(package), escape(tag.tag), escape(tag.note))
    console.print(table)


def print_check(category: str, data: dict[str, Any], console: Console, heading: str) -> bool:
    """Details of an autopkgtest, lintian, debdiff, blhc or piuparts artifact; False for other categories
    (or unreadable data)."""
    try:
        if category == "debian:autopkgtest":
            print_autopkgtest(AutopkgtestData.model_validate(data), console, heading)
            return True
        if category == "debian:lintian":
            print_lintian(LintianData.model_validate(data), console, heading)
            return True
        if category == "debian:debdiff":
            qa_details.print_debdiff(DebdiffData.model_validate(data), console, heading)
            return True
        if category == "debian:blhc":
            qa_details.print_blhc(BlhcData.model_validate(data), console, heading)
            return True
        if category == "debian:piuparts":
            qa_details.print_piuparts(PiupartsData.model_validate(data), console, heading)
            return True
    except ValidationError:
        pass  # stored by an older version with other fields: the generic listing shows it
    return False


def print_upload_details(
    report: UploadReport, artifacts: dict[int, tuple[str, dict[str, Any]]], console: Console
) -> None:
    """Per test and per tag, under the report's task table, for the last run of each check."""
    for task in report.tasks:
        for artifact_id in task.artifact_ids:
            found = artifacts.get(artifact_id)
            if found is None:
                continue
            heading = f"[bold]{task.name} {task.architecture}[/] (artifact {artifact_id})"
            print_check(found[0], found[1], console, heading)
