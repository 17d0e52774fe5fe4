"""Reports with what the stores hold beyond the workflow result: check details, every campaign verdict."""

from __future__ import annotations

from pydantic import Field
from rich.console import Console

from client.campaigns import print_campaign_report
from client.check_details import print_upload_details
from client.progress import print_report
from client.stored import check_data, stored_verdicts
from models.campaign import CampaignReport, TargetVerdict
from models.payloads import UploadReport
from worker.context import Context


def print_upload_report(report: UploadReport, console: Console, url: str | None, context: Context) -> None:
    """The task table, then per-test autopkgtest results and lintian tags from the stored artifacts."""
    print_report(report, console, url)
    found = check_data(context, [i for t in report.tasks for i in t.artifact_ids])
    if isinstance(found, str):
        console.print(f"  (no per-test results or lintian tags: {found})", highlight=False)
        return
    print_upload_details(report, found, console)


class CampaignResults(CampaignReport):
    """A campaign report with every target's verdict (`debflow report --json`)."""

    verdicts: list[TargetVerdict] = Field(default_factory=list)
    # Targets whose verdict is not stored: a campaign from before verdicts were stored, or expired ones.
    verdicts_missing: int = 0
    verdicts_note: str = ""


def campaign_results(report: CampaignReport, context: Context) -> CampaignResults:
    """The stored verdicts, completed by the notable ones the workflow result carries."""
    stored = stored_verdicts(context, report.workflow_id)
    note = ""
    if isinstance(stored, str):
        note, stored = f"stored verdicts unreadable ({stored}); only the notable ones are listed", []
    known = {(v.source, v.architecture) for v in stored}
    verdicts = stored + [v for v in report.notable if (v.source, v.architecture) not in known]
    verdicts.sort(key=lambda v: (v.architecture, v.source))
    missing = max(0, report.targets - len(verdicts))
    if missing and not note:
        note = f"{missing} targets' verdicts are not stored (older campaign, or expired); counts are complete"
    return CampaignResults(
        **report.model_dump(), verdicts=verdicts, verdicts_missing=missing, verdicts_note=note
    )


def print_campaign_results(
    report: CampaignReport,
    console: Console,
    ui_url: str | None,
    namespace: str,
    context: Context,
    *,
    every_target: bool = False,
) -> None:
    """The notable targets, or with `every_target` all of them, each with both log ids."""
    if not every_target:
        print_campaign_report(report, console, ui_url, namespace)
        if report.targets > len(report.notable):
            console.print(f"  every target with its logs: `debflow report {report.workflow_id} --all`")
        return
    results = campaign_results(report, context)
    print_campaign_report(report, console, ui_url, namespace, listed=results.verdicts)
    if results.verdicts_note:
        console.print(f"  {results.verdicts_note}", highlight=False)
