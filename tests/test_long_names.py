"""Long names end to end: ids and keys within Temporal's limits, names Debian could not hold refused in one
line (nothing stored, no workflow), look-ups of long ids, and `debflow dev` under a private directory."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes

from models import identifiers
from models.identifiers import FAIRNESS_KEY_MAX, NAME_MAX, VERSION_MAX, WORKFLOW_ID_MAX
from models.payloads import TaskResult
from tests.conftest import row_counts, store_files
from tests.long_packages import LONG_HELLO, LONG_VERSION, long_hello_tree, source_package
from tests.test_bad_input import debflow
from tests.test_pipeline import replay
from worker.settings import PROJECT_ROOT, Settings
from workflows import search_attributes as sa
from workflows.upload_pipeline import UploadPipelineWorkflow

MAX_NAME, MAX_VERSION = "n" * NAME_MAX, "1" + "a" * (VERSION_MAX - 1)


# --- the identifiers alone ---------------------------------------------------------------------------


def test_ids_that_fit_are_kept_as_they_are() -> None:
    assert identifiers.upload_run_id("hello", "1.0", "1a2b3c4d") == "upload-hello_1.0-1a2b3c4d"
    assert (
        identifiers.upload_run_id("hello", "1.0", "1a2b3c4d", "abcdef") == "upload-hello_1.0-1a2b3c4d-abcdef"
    )
    assert identifiers.upload_fairness_key("hello") == "upload-hello"
    campaign = identifiers.campaign_id("glibc", "2.36", simulated=True, unique="0a1b2c3d")
    assert campaign == "simulated-campaign-glibc_2.36-0a1b2c3d"
    assert identifiers.campaign_fairness_key(campaign) == campaign
    assert identifiers.batch_id(campaign, "amd64", 3) == f"{campaign}-amd64-batch-0003"


def test_a_long_fairness_key_is_shortened_stably_and_distinctly() -> None:
    bookworm_longest = "golang-github-container-orchestrated-devices-container-device-interface"
    key = identifiers.upload_fairness_key(bookworm_longest)
    assert len(key.encode()) == FAIRNESS_KEY_MAX
    assert key.startswith("upload-golang-github-container") and re.search(r"~[0-9a-f]{12}$", key)
    assert identifiers.upload_fairness_key(bookworm_longest) == key  # stable
    assert identifiers.upload_fairness_key(bookworm_longest + "x") != key  # distinct
    one = identifiers.campaign_id(bookworm_longest, "0.5.2-2", simulated=False, unique="00000001")
    two = identifiers.campaign_id(bookworm_longest, "0.5.2-2", simulated=False, unique="00000002")
    assert bookworm_longest in one  # the id keeps the whole name: it fits
    keys = {identifiers.campaign_fairness_key(one), identifiers.campaign_fairness_key(two)}
    assert len(keys) == 2 and all(len(k.encode()) <= FAIRNESS_KEY_MAX for k in keys)


def test_shortening_never_cuts_a_character_in_half() -> None:
    key = identifiers.bounded("é" * 40, FAIRNESS_KEY_MAX)
    assert len(key.encode()) <= FAIRNESS_KEY_MAX and key.startswith("é" * 25)
    key.encode().decode()  # valid UTF-8


def test_every_id_of_the_longest_accepted_names_fits() -> None:
    identifiers.check_package(MAX_NAME, MAX_VERSION, [MAX_NAME])
    again = identifiers.upload_run_id(MAX_NAME, MAX_VERSION, "1a2b3c4d", "abcdef")
    campaign = identifiers.campaign_id(MAX_NAME, MAX_VERSION, simulated=True, unique="0a1b2c3d")
    assert MAX_NAME in again and MAX_NAME in campaign
    assert len(identifiers.upload_fairness_key(MAX_NAME).encode()) <= FAIRNESS_KEY_MAX
    assert len(identifiers.campaign_fairness_key(campaign).encode()) <= FAIRNESS_KEY_MAX
    assert len(identifiers.batch_id(campaign, "amd64", 9999)) <= WORKFLOW_ID_MAX


def test_a_batch_of_a_campaign_id_at_the_limit_keeps_its_suffix() -> None:
    campaign = "c" * WORKFLOW_ID_MAX
    batch = identifiers.batch_id(campaign, "arm64", 12)
    assert len(batch.encode()) == WORKFLOW_ID_MAX and batch.endswith(
        "~" + identifiers.digest(campaign) + "-arm64-batch-0012"
    )
    assert batch != identifiers.batch_id("c" * (WORKFLOW_ID_MAX - 1) + "d", "arm64", 12)


@pytest.mark.parametrize(
    ("source", "version", "binaries", "message"),
    [
        ("n" * (NAME_MAX + 1), "1.0", [], "source package name"),
        ("hello", "1" * (VERSION_MAX + 1), [], "version"),
        ("hello", "1.0", ["b" * (NAME_MAX + 1)], "binary package name"),
    ],
)
def test_names_debian_could_not_hold_are_refused(
    source: str, version: str, binaries: list[str], message: str
) -> None:
    with pytest.raises(identifiers.TooLong, match=message):
        identifiers.check_package(source, version, binaries)


# --- what the Temporal server accepts ----------------------------------------------------------------


async def test_temporal_accepts_the_ids_and_keys_of_the_longest_names(client: Client) -> None:
    """Started on a queue nobody polls: the server checks ids, fairness keys and search attributes."""
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    campaign = identifiers.campaign_id(MAX_NAME, MAX_VERSION, simulated=True, unique=uuid.uuid4().hex[:8])
    starts = [
        (
            identifiers.upload_run_id(MAX_NAME, MAX_VERSION, uuid.uuid4().hex[:8]),
            identifiers.upload_fairness_key(MAX_NAME),
        ),
        (campaign, identifiers.campaign_fairness_key(campaign)),
        (identifiers.batch_id("c" * WORKFLOW_ID_MAX, "amd64", 0), "batch"),
    ]
    for workflow_id, key in starts:
        handle = await client.start_workflow(
            "Unpolled",
            id=workflow_id,
            task_queue=queue,
            priority=Priority(fairness_key=key),
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(sa.PACKAGE, MAX_NAME), SearchAttributePair(sa.VERSION, MAX_VERSION)]
            ),
            static_summary=f"upload {MAX_NAME} {MAX_VERSION}",
        )
        assert handle.id == workflow_id
        await handle.terminate("test over")


# --- refusals through the command line ---------------------------------------------------------------


async def started_on(client: Client, queue: str) -> list[str]:
    """The workflows ever started on `queue`. A sentinel started last is awaited in the visibility store
    first, so that a workflow started before it is recorded too (one history shard on the dev server)."""
    sentinel = await client.start_workflow("Sentinel", id=f"sentinel-{uuid.uuid4().hex}", task_queue=queue)
    try:
        for _ in range(300):
            found = [w.id async for w in client.list_workflows(f'TaskQueue="{queue}"')]
            if sentinel.id in found:
                return [i for i in found if i != sentinel.id]
            await asyncio.sleep(0.2)
        raise AssertionError("the sentinel never became visible")
    finally:
        await sentinel.terminate("test over")


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def dsc_named(root: Path, name: str, version: str = "1.0") -> Path:
    """A real source package (hello-debflow built by dpkg-source) named `name` at `version`."""
    from tests.long_packages import EXAMPLES, renamed

    return source_package(renamed(EXAMPLES / "hello-debflow", root / name, {"hello-debflow": name}, version))


REFUSED = {
    "name-101": (lambda root: dsc_named(root, "n" + "-x" * 50), [], "source package name 'n-x-x"),
    "version-101": (lambda root: dsc_named(root, "hello-debflow", "1." + "9" * 99), [], "version '1.99"),
    "name-101-again": (
        lambda root: dsc_named(root, "n" + "-x" * 50),
        ["--again"],
        "at most 100 are accepted",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_submit_refuses_names_over_the_limit_and_leaves_nothing(
    case: str, client: Client, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    make, options, message = REFUSED[case]
    dsc = await asyncio.to_thread(make, tmp_path)
    rows, files = row_counts(engine), store_files(settings.store_dir)
    result = await asyncio.to_thread(debflow, ["submit", str(dsc), *options], settings)
    line = one_error_line(result)
    assert message in line and "255 bytes" in line, line
    assert row_counts(engine) == rows and store_files(settings.store_dir) == files
    assert await started_on(client, settings.task_queue) == []


TOO_LONG_ID = "upload-" + "x" * WORKFLOW_ID_MAX
UNKNOWN_LONG_ID = "upload-" + "x" * (WORKFLOW_ID_MAX - 20)
LOOKUPS = {
    "report-too-long": (["report", TOO_LONG_ID], "Temporal's workflow ids are at most 1000"),
    "watch-too-long": (["watch", TOO_LONG_ID], "Temporal's workflow ids are at most 1000"),
    "retry-too-long": (["retry", TOO_LONG_ID], "Temporal's workflow ids are at most 1000"),
    "close-too-long": (["close", TOO_LONG_ID], "Temporal's workflow ids are at most 1000"),
    "report-unknown-long": (["report", UNKNOWN_LONG_ID], "no run with workflow id"),
    "retry-unknown-long": (["retry", UNKNOWN_LONG_ID], "no run with workflow id"),
    "report-empty": (["report", ""], "the workflow id is empty"),
    "campaign-upload-too-long": (["campaign", "--upload", TOO_LONG_ID], "at most 1000"),
    "campaign-trigger-101": (["campaign", "n" * 101, "--simulated"], "source package name"),
    "campaign-version-101": (["campaign", "hello", "--simulated", "--version", "1" * 101], "version"),
    "campaign-binary-101": (["campaign", "hello", "--simulated", "--binary", "b" * 101], "binary package"),
    "rdeps-source-101": (["rdeps", "bookworm", "n" * 101], "at most 100 are accepted"),
    # Within the limit, the name reaches the look-up itself.
    "rdeps-source-long": (["rdeps", "no-such-suite", LONG_HELLO], "unknown suite 'no-such-suite'"),
}


@pytest.mark.parametrize("case", sorted(LOOKUPS))
async def test_lookups_with_long_names_fail_in_one_line(
    case: str, client: Client, settings: Settings, engine: Engine
) -> None:
    args, message = LOOKUPS[case]
    rows = row_counts(engine)
    result = await asyncio.to_thread(debflow, args, settings)
    line = one_error_line(result)
    assert message in line, line
    assert len(line) < 400, line  # the offending id is quoted in part, not echoed whole
    assert row_counts(engine) == rows
    assert await started_on(client, settings.task_queue) == []


# --- a long name through the whole pipeline ----------------------------------------------------------


@pytest.mark.slow
async def test_a_name_longer_than_bookworms_longest_runs_end_to_end(
    client: Client, settings: Settings, worker: None, tmp_path: Path
) -> None:
    """80 characters of name, 128 of name and version: submitted, built, linted and tested; its run is
    found by name and `report`, `watch` and `retry` answer for it."""
    dsc = await asyncio.to_thread(source_package, long_hello_tree(tmp_path, LONG_VERSION))
    started = await asyncio.to_thread(debflow, ["submit", str(dsc)], settings)
    assert started.returncode == 0, started.stderr
    workflow_id = re.search(r"started (\S+)", started.stdout).group(1)  # type: ignore[union-attr]
    assert workflow_id.startswith(f"upload-{LONG_HELLO}_{LONG_VERSION}-")  # it fits: kept whole

    report = await client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id).result()
    assert report.result == TaskResult.SUCCESS, report
    assert report.source == LONG_HELLO and report.version == LONG_VERSION
    assert {t.name: t.result for t in report.tasks} == {
        "build": "success",
        "lintian": "success",
        "autopkgtest": "success",
    }
    description = await client.get_workflow_handle(workflow_id).describe()
    assert description.raw_description.workflow_execution_info.priority.fairness_key == (
        identifiers.upload_fairness_key(LONG_HELLO)
    )
    # Other tests of the session run campaigns and uploads of this name at version 1.1: the version tells.
    query = f'DebflowPackage="{LONG_HELLO}" AND DebflowVersion="{LONG_VERSION}"'
    found = [w.id async for w in client.list_workflows(query)]
    assert found == [workflow_id]

    shown = await asyncio.to_thread(debflow, ["report", workflow_id, "--json"], settings)
    assert shown.returncode == 0 and LONG_VERSION in shown.stdout, shown.stderr
    watched = await asyncio.to_thread(debflow, ["watch", workflow_id], settings)
    assert watched.returncode == 0, watched.stderr
    retried = await asyncio.to_thread(debflow, ["retry", workflow_id], settings)
    assert "nothing to retry" in one_error_line(retried)  # it ended, and nothing failed
    await replay(client, workflow_id, "upload-pipeline-v4-long-name")


# --- `debflow dev` under a private directory ---------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as a system user only when we are root")
def test_dev_under_a_private_directory_is_refused_in_one_line_naming_it() -> None:
    private = Path(tempfile.mkdtemp(prefix="debflow-test-private-"))  # mode 0700, as from `mktemp -d`
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBFLOW_", "TEMPORAL_"))}
        result = subprocess.run(
            [sys.executable, "-m", "client", "dev"],
            capture_output=True,
            text=True,
            env={**env, "DEBFLOW_STATE_DIR": str(private / "state"), "COLUMNS": "300"},
            cwd=PROJECT_ROOT,
            timeout=120,
        )
        line = one_error_line(result)
        assert f"cannot enter {private} (mode 0700)" in line and "DEBFLOW_STATE_DIR" in line, line
        assert not (private / "state" / "postgres").exists()  # refused before initdb
        assert not (private / "state" / "temporal.db").exists()  # and before Temporal
    finally:
        shutil.rmtree(private, ignore_errors=True)
