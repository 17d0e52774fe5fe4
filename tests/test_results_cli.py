"""Results read from the command line: a run that did not complete is one line, logs and artifacts
without SQL, every campaign verdict, per-test and per-tag upload reports, whole lines on a pipe."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, RetryState

from activities.storage.store import ArtifactStore, NewArtifact, Relation
from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from client.failures import describe_failure
from models.artifacts import AutopkgtestData, AutopkgtestTestResult, BinaryPackageData
from models.campaign import CampaignInput, RunResult, Simulation, Verdict
from models.tables import RelationType
from support.synthetic_suite import write_suite
from tests.conftest import subprocess_env
from tests.test_pipeline import replay
from worker.settings import PROJECT_ROOT, Settings


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "client", *args]


def _env(settings: Settings) -> dict[str, str]:
    env = subprocess_env(settings)
    env.pop("COLUMNS", None)  # as a pipe sees it: no terminal, no width
    return env


async def debflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, from a thread: the in-process worker keeps running meanwhile."""
    return await asyncio.to_thread(
        subprocess.run,
        _command(list(args)),
        capture_output=True,
        text=True,
        env=_env(settings),
        cwd=PROJECT_ROOT,
        timeout=600,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one `error:` line on stderr, with the exit code expected and no traceback anywhere."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


async def started_id(process: subprocess.Popen[str]) -> str:
    """The workflow id a `--wait` command prints first."""
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    assert line.startswith("started "), line
    return line.split()[1]


async def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = await asyncio.to_thread(process.communicate, timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _simulated_suite(
    sessions: sessionmaker[Session], tmp_path: Path, dependants: int, trigger: str | None = None
) -> tuple[str, str]:
    """A fresh suite; its packages are named after `trigger` (the simulated outcomes follow the names)."""
    trigger = trigger or f"libres{uuid.uuid4().hex[:6]}"
    suite = f"test-{trigger}-{uuid.uuid4().hex[:6]}"
    sources, packages, release, keyring = write_suite(tmp_path, trigger, dependants=dependants)
    import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], release=release, keyring=keyring
    )
    return trigger, suite


def test_a_nested_failure_is_told_by_its_innermost_message_and_where_it_came_from() -> None:
    missing = ApplicationError(
        "pool/main/f/foo/foo_1.0.orig.tar.gz: 404 Not Found from http://mirror.example/debian",
        type="MissingFile",
        non_retryable=True,
    )
    activity = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="w1",
        activity_type="run_archive_test",
        activity_id="7",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    activity.__cause__ = missing
    child = ChildWorkflowError(
        "Child Workflow execution failed",
        namespace="default",
        workflow_id="campaign-x-amd64-batch-0000",
        run_id="r",
        workflow_type="CampaignBatch",
        initiated_event_id=1,
        started_event_id=2,
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    child.__cause__ = activity
    line = describe_failure("campaign-x", WorkflowFailureError(cause=child))
    assert line == (
        "campaign-x failed: MissingFile: pool/main/f/foo/foo_1.0.orig.tar.gz: 404 Not Found from "
        "http://mirror.example/debian (in activity run_archive_test, child run campaign-x-amd64-batch-0000)"
    )


async def test_a_cancelled_campaign_is_one_line_in_wait_report_and_watch(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    trigger, suite = _simulated_suite(sessions, tmp_path, dependants=6)
    process = subprocess.Popen(
        _command(["campaign", trigger, "--simulated", "--suite", suite, "--duration-scale", "20", "--wait"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(settings),
        cwd=PROJECT_ROOT,
    )
    try:
        campaign_id = await started_id(process)
        handle = client.get_workflow_handle(campaign_id)
        # Cancelled mid-way: once its batch has started testing.
        await wait_until_listed(client, f'WorkflowId = "{campaign_id}-amd64-batch-0000"')
        await handle.cancel()
        waited = await finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    expected = f"error: {campaign_id} was cancelled"
    assert one_error_line(waited, 1) == expected
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert one_error_line(await debflow(settings, "report", campaign_id), 1) == expected
    assert one_error_line(await debflow(settings, "watch", campaign_id), 1) == expected
    assert one_error_line(await debflow(settings, "report", campaign_id, "--json"), 1) == expected


async def wait_until_listed(client: Client, query: str) -> None:
    """Until a workflow matching `query` exists (visibility lags a little behind starts)."""
    for _ in range(600):
        if [w async for w in client.list_workflows(query)]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no workflow {query}")


@pytest.mark.slow
async def test_a_terminated_upload_is_one_line_in_submit_report_and_watch(
    client: Client, settings: Settings, worker: None, example_sources: dict[str, Path]
) -> None:
    process = subprocess.Popen(
        _command(["submit", str(example_sources["hello-debflow"]), "--wait", "--again"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(settings),
        cwd=PROJECT_ROOT,
    )
    try:
        upload_id = await started_id(process)
        await client.get_workflow_handle(upload_id).terminate(reason="stopped by the operator")
        waited = await finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    expected = f"error: {upload_id} was terminated: stopped by the operator"
    assert one_error_line(waited, 1) == expected
    assert one_error_line(await debflow(settings, "report", upload_id), 1) == expected
    assert one_error_line(await debflow(settings, "watch", upload_id), 1) == expected


async def test_a_failed_campaign_says_why_in_one_line(
    client: Client, settings: Settings, worker: None
) -> None:
    params = CampaignInput(trigger_source="hello-debflow", trigger_version="1.1", suite="bookworm")
    handle = await start_campaign(client, params, settings.task_queue)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    line = one_error_line(await debflow(settings, "report", handle.id), 1)
    assert line.startswith(f"error: {handle.id} failed: BadCampaign: a campaign with a real executor needs")


def target_rows(output: str, sources: set[str]) -> list[list[str]]:
    """The rows of a campaign report's target table: verdict, source, version, …"""
    rows = [[cell for cell in line.split() if cell != "│"] for line in output.splitlines()]
    return [row for row in rows if len(row) > 1 and row[1] in sources]


async def test_every_campaign_verdict_is_listed_with_its_logs(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # Seed 18 with these names: five new runs fail, two references fail, three regressions suspected.
    trigger, suite = _simulated_suite(sessions, tmp_path, dependants=24, trigger="libresults")
    params = CampaignInput(
        trigger_source=trigger, trigger_version="1.1", suite=suite, simulation=Simulation(seed=18)
    )
    handle = await start_campaign(client, params, settings.task_queue)
    report = await handle.result()
    assert report.targets == 25 and 2 <= len(report.notable) < report.counts[Verdict.PASS]

    result = await debflow(settings, "report", handle.id, "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    verdicts = listed["verdicts"]
    assert len(verdicts) == 25 and listed["verdicts_missing"] == 0
    assert {v["source"] for v in verdicts} == {trigger} | {f"{trigger}-user{i:04d}" for i in range(24)}
    counted: dict[str, int] = {}
    for v in verdicts:
        counted[v["verdict"]] = counted.get(v["verdict"], 0) + 1
        # Every failed side has its log (the simulated executor stores one for each failure).
        assert (v["new"] == RunResult.FAIL) == (v["new_log_artifact_id"] is not None), v
        assert (v["reference"] == RunResult.FAIL) == (v["reference_log_artifact_id"] is not None), v
    assert counted == report.counts
    assert {v.source for v in report.notable} < {v["source"] for v in verdicts}

    table = await debflow(settings, "report", handle.id)
    every = await debflow(settings, "report", handle.id, "--all")
    assert table.returncode == 0 and every.returncode == 0, table.stderr + every.stderr
    sources = {v["source"] for v in verdicts}
    table_rows = target_rows(table.stdout, sources)
    every_rows = target_rows(every.stdout, sources)
    assert sorted(row[1] for row in table_rows) == sorted(v.source for v in report.notable)
    assert sorted(row[1] for row in every_rows) == sorted(sources)
    assert all(row[0] in set(Verdict) for row in every_rows)
    failed = next(v for v in verdicts if v["new_log_artifact_id"] is not None)
    log = await debflow(settings, "log", str(failed["new_log_artifact_id"]))
    assert log.returncode == 0, log.stderr
    assert log.stdout.startswith(f"SIMULATED autopkgtest run of {failed['source']} ")
    await replay(client, f"{handle.id}-amd64-batch-0000", "campaign-batch-verdicts")


async def test_log_and_artifact_show_read_the_store_without_sql(
    settings: Settings, store: ArtifactStore, tmp_path: Path
) -> None:
    log_text = "".join(f"line {i}: [not markup] {'x' * 150}\n" for i in range(50))
    (tmp_path / "log").write_text(log_text)
    (tmp_path / "summary").write_text("smoke PASS\n")
    (tmp_path / "pkg.deb").write_bytes(b"not really a deb")
    long_details = "details " * 30
    binary, autopkgtest = store.register(
        [
            NewArtifact(
                "debian:binary-package",
                BinaryPackageData(
                    package="pkg",
                    version="1.0",
                    architecture="amd64",
                    source="pkg",
                    source_version="1.0",
                    filename="pkg.deb",
                ),
                {"pkg.deb": tmp_path / "pkg.deb"},
            ),
            NewArtifact(
                "debian:autopkgtest",
                AutopkgtestData(
                    source="pkg",
                    version="1.0",
                    architecture="amd64",
                    suite="bookworm",
                    result="failure",
                    exit_code=4,
                    virt_server="host:null",
                    tests={
                        "smoke": AutopkgtestTestResult(status="PASS"),
                        "deep": AutopkgtestTestResult(status="FAIL", details=long_details.strip()),
                    },
                ),
                {"log": tmp_path / "log", "summary": tmp_path / "summary"},
            ),
        ],
        relations=[Relation(1, 0, RelationType.RELATES_TO, target_in_batch=True)],
    )

    printed = await debflow(settings, "log", str(autopkgtest))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == log_text  # as stored: not wrapped at 80 columns, no markup read

    shown = await debflow(settings, "artifact", "show", str(autopkgtest))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"artifact {autopkgtest}: debian:autopkgtest" in lines[0]
    assert any("deep" in line and "FAIL" in line and long_details.strip() in line for line in lines)
    assert any(line.split()[:1] == ["log"] and "(log)" in line for line in lines)  # the files table
    assert any("relates-to →" in line and str(binary) in line for line in lines)
    assert shown.stdout.endswith(log_text)

    as_json = json.loads((await debflow(settings, "artifact", "show", str(binary), "--json")).stdout)
    assert as_json["category"] == "debian:binary-package" and as_json["log_path"] is None
    assert [f["path"] for f in as_json["files"]] == ["pkg.deb"]
    assert as_json["relations"] == [
        {
            "type": "relates-to",
            "direction": "from",
            "artifact_id": autopkgtest,
            "category": "debian:autopkgtest",
        }
    ]

    line = one_error_line(await debflow(settings, "log", str(binary)), 2)
    assert f"artifact {binary} is a debian:binary-package, which has no log" in line
    assert "no artifact 999999999" in one_error_line(await debflow(settings, "log", "999999999"), 2)
    assert "invalid artifact id" in one_error_line(await debflow(settings, "artifact", "show", "1;drop"), 2)
    assert "no artifact" in one_error_line(await debflow(settings, "artifact", "show", "999999999"), 2)


@pytest.mark.slow
async def test_the_upload_report_shows_each_test_and_lintian_tags_by_severity(
    settings: Settings, worker: None, example_sources: dict[str, Path]
) -> None:
    waited = await debflow(settings, "submit", str(example_sources["broken-debflow"]), "--wait", "--again")
    assert waited.returncode == 1, waited.stderr  # its always-fails test fails: the run's result
    assert "Traceback" not in waited.stderr
    lines = waited.stdout.splitlines()
    tests = {
        line.split()[0]: line.split()[1] for line in lines if line.startswith("  ") and len(line.split()) >= 2
    }
    assert tests.get("runs") == "PASS" and tests.get("always-fails") == "FAIL", waited.stdout
    assert any(line.split()[:3] == ["warning", "broken-debflow", "no-manual-page"] for line in lines)
    heading = next(line for line in lines if line.startswith("lintian amd64 (artifact "))
    assert "warning" in heading
