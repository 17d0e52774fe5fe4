"""`make demo`: the examples built, linted and tested end to end on the embedded stack."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

from rich.console import Console

from client.api import get_report, submit_upload, workflow_url
from client.progress import follow, print_report
from models.payloads import TaskStatus, UploadReport
from worker.connect import connect_temporal
from worker.devstack import DevStack
from worker.settings import PROJECT_ROOT, Settings

EXAMPLES = ("hello-debflow", "broken-debflow")


def build_source_packages(target: Path) -> list[Path]:
    """`dpkg-source -b` each example into `target`; returns the .dsc files."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    dscs = []
    for name in EXAMPLES:
        subprocess.run(
            ["dpkg-source", "-b", str(PROJECT_ROOT / "examples" / name)],
            cwd=target,
            check=True,
            capture_output=True,
        )
        dscs += sorted(target.glob(f"{name}_*.dsc"))
    return dscs


def completed(report: UploadReport) -> bool:
    """Every task reached a verdict or was skipped for a stated reason; none errored."""
    return all(t.status in (TaskStatus.COMPLETED, TaskStatus.SKIPPED) for t in report.tasks)


def run_demo(settings: Settings, console: Console) -> int:
    started = time.monotonic()
    stack = DevStack(settings, workers=1, say=console.print)
    console.rule(f"debflow demo ({settings.executor} executor)")
    stack.start()
    try:
        dscs = build_source_packages(settings.state_dir.resolve() / "demo-sources")
        reports = asyncio.run(_submit_and_follow(settings, stack, dscs, console))
    finally:
        console.print("stopping the dev stack…")
        stack.stop()
    ok = all(completed(r) for r in reports) and len(reports) == len(EXAMPLES)
    console.rule()
    console.print(
        f"demo finished in {time.monotonic() - started:.0f} s: "
        + ("every run completed" if ok else "[red]some runs did not complete[/]")
    )
    console.print(
        "Browse the runs later: `.venv/bin/debflow dev` brings Temporal and its Web UI back "
        f'({stack.ui_url or "your Temporal UI"}); search e.g. DebflowPackage="hello-debflow".'
    )
    return 0 if ok else 1


async def _submit_and_follow(
    settings: Settings, stack: DevStack, dscs: list[Path], console: Console
) -> list[UploadReport]:
    client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
    # `again`: each demo is a new run, even while an earlier demo's runs still accept retries.
    handles = [await submit_upload(client, settings, stack.database_url, dsc, again=True) for dsc in dscs]
    await follow(client, [h.id for h in handles], console)
    reports = []
    for handle in handles:
        report = await get_report(client, handle.id)
        reports.append(report)
        print_report(report, console, workflow_url(stack.ui_url, client.namespace, handle.id))
    return reports
