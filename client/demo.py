"""`make demo`: the examples built, linted and tested end to end on the embedded stack."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from rich.console import Console

from activities.services.suites import import_suite_indices
from client.api import get_report, submit_upload, workflow_url
from client.campaigns import campaign_for_upload, print_campaign_report, start_campaign, watch_campaign
from client.local_archive import build_local_archive, hello_with_a_new_greeting
from client.output import rule
from client.progress import follow, print_report
from client.serve_commands import DEFAULT_PORT, site_url
from models.campaign import CampaignReport, Verdict
from models.payloads import Check, TaskStatus, UploadReport
from worker.connect import connect_temporal
from worker.context import database
from worker.devstack import DevStack
from worker.settings import PROJECT_ROOT, Settings

EXAMPLES = ("hello-debflow", "broken-debflow")
DEMO_SUITE = "demo-examples"


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
    rule(console, f"debflow demo ({settings.executor} executor)")
    stack.start()
    campaign: CampaignReport | None = None
    try:
        dscs = build_source_packages(settings.state_dir.resolve() / "demo-sources")
        reports = asyncio.run(_submit_and_follow(settings, stack, dscs, console))
        if settings.executor == "host":
            campaign = asyncio.run(_campaign(settings, stack, console))
        else:
            console.print(
                "The campaign part of the demo tests packages of a local archive, which only the host "
                "executor can install (an unshare testbed is made from a Debian suite): skipped."
            )
    finally:
        console.print("stopping the dev stack…")
        stack.stop()
    ok = all(completed(r) for r in reports) and len(reports) == len(EXAMPLES)
    if settings.executor == "host":
        # The one regression the demo's upload causes, found and confirmed.
        ok = ok and campaign is not None and campaign.counts == {Verdict.REGRESSION: 1, Verdict.PASS: 1}
    rule(console)
    console.print(
        f"demo finished in {time.monotonic() - started:.0f} s: "
        + ("every run completed" if ok else "[red]some runs did not complete[/]")
    )
    console.print(
        "Browse the runs later: `.venv/bin/debflow dev` brings Temporal and its Web UI back "
        f'({stack.ui_url or "your Temporal UI"}); search e.g. DebflowPackage="hello-debflow".'
    )
    if campaign is not None:
        # `debflow dev` serves the results site on this port by default (client/serve_commands.py).
        console.print(
            "The campaign's page, while `.venv/bin/debflow dev` runs: "
            f"{site_url('127.0.0.1', DEFAULT_PORT)}campaigns/{quote(campaign.workflow_id, safe='')}",
            soft_wrap=True,
        )
    return 0 if ok else 1


async def _campaign(settings: Settings, stack: DevStack, console: Console) -> CampaignReport:
    """hello-debflow 1.1 changes its greeting; greeter-debflow, in the suite, relays it and tests it."""
    client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
    root = settings.state_dir.resolve() / "demo-campaign"
    shutil.rmtree(root, ignore_errors=True)
    (root / "upload").mkdir(parents=True)
    rule(console, "reverse dependencies")
    console.print(
        f"building suite {DEMO_SUITE!r}, a local archive of hello-debflow 1.0 and greeter-debflow (which "
        "relays hello-debflow's greeting and tests it), and the upload hello-debflow 1.1 (a new greeting)…"
    )
    trees = [PROJECT_ROOT / "examples" / name for name in ("hello-debflow", "greeter-debflow")]
    archive = await asyncio.to_thread(build_local_archive, root / "mirror", trees, suite=DEMO_SUITE)
    with database(stack.database_url) as sessions:
        import_suite_indices(
            sessions,
            name=DEMO_SUITE,
            sources=archive.sources,
            packages=archive.packages,
            release=archive.release,
            keyring=archive.keyring,
            mirror=archive.mirror,
            default_mirror=settings.mirror,
        )
    dsc = await asyncio.to_thread(hello_with_a_new_greeting, root / "upload")
    upload = await submit_upload(client, settings, stack.database_url, dsc, checks=[Check.BUILD], again=True)
    await follow(client, [upload.id], console)
    params = await campaign_for_upload(client, upload.id, suite=DEMO_SUITE)
    handle = await start_campaign(
        client, params, settings.task_queue, priority_key=settings.campaign_priority
    )
    console.print(f"campaign {handle.id}: every reverse dependency, with the upload and against the suite")
    await watch_campaign(client, handle.id, console)
    report = await handle.result()
    print_campaign_report(report, console, stack.ui_url, client.namespace)
    return report


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
