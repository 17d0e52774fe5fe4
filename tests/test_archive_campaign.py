"""A real campaign: an upload built by its pipeline, its reverse dependency fetched from a real local archive
and tested with the host executor against the upload and against the suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowFailureError

from activities.storage.store import ArtifactStore
from client.campaigns import start_campaign
from client.local_archive import LocalArchive, pool_directory
from models.campaign import CampaignInput, RunResult, Verdict
from models.tables import TaskHistory
from tests.browser_steps import browser, follow_the_regression  # noqa: F401 (browser: a fixture)
from tests.local_campaign import EXAMPLES, left_on_the_host, run_local_campaign
from tests.test_pipeline import replay
from worker.settings import Settings

# Real Debian tools end to end: minutes, not seconds (`pytest -m "not slow"` leaves it out).
pytestmark = pytest.mark.slow

PACKAGES = ("hello-debflow", "hello-debflow-doc", "greeter-debflow")
RELAY = "relay-debflow"


def relay_tree(root: Path) -> Path:
    """Another reverse dependency of hello-debflow with a test; the test below removes its source tarball
    from the pool, as a partial or lagging mirror serves a .dsc without its archive."""
    tree = root / RELAY
    files = {
        "debian/control": f"Source: {RELAY}\nSection: misc\nPriority: optional\n"
        "Maintainer: debflow developers <debflow@example.org>\nBuild-Depends: debhelper-compat (= 13)\n"
        f"Standards-Version: 4.6.2\nRules-Requires-Root: no\n\nPackage: {RELAY}\nArchitecture: all\n"
        "Depends: hello-debflow, ${misc:Depends}\nDescription: relays hello-debflow (debflow tests)\n"
        " A reverse dependency whose source the test mirror lacks.\n",
        "debian/changelog": f"{RELAY} (1.0) unstable; urgency=medium\n\n  * Initial release.\n\n"
        " -- debflow developers <debflow@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
        "debian/rules": "#!/usr/bin/make -f\n%:\n\tdh $@\n",
        "debian/source/format": "3.0 (native)\n",
        "debian/tests/control": "Tests: greets\nDepends: @\n",
        "debian/tests/greets": "#!/bin/sh\nset -e\nhello-debflow\n",
    }
    for name, content in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(content)
    for name in ("debian/rules", "debian/tests/greets"):
        (tree / name).chmod(0o755)
    return tree


async def test_real_campaign_with_the_host_executor_confirms_a_regression(
    client: Client,
    settings: Settings,
    worker: None,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    browser: WebDriver,  # noqa: F811 (the fixture of tests/browser_steps.py)
    tmp_path: Path,
) -> None:
    missing = f"{pool_directory(RELAY)}/{RELAY}_1.0.tar.xz"

    def drop_relay_tarball(archive: LocalArchive) -> None:
        (archive.root / missing).unlink()  # still listed in Sources, like a mirror mid-sync

    run = await run_local_campaign(
        client,
        settings,
        sessions,
        tmp_path,
        [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow", relay_tree(tmp_path / "trees")],
        before_import=drop_relay_tarball,
    )
    archive, report = run.archive, run.report

    assert not report.simulated
    # hello-debflow itself: its updated tests pass with 1.1 and its old ones with 1.0; the target whose
    # source the mirror lacks is UNTESTABLE and does not stop the others.
    assert report.counts == {Verdict.REGRESSION: 1, Verdict.PASS: 1, Verdict.UNTESTABLE: 1}, report.notable
    (greeter,) = [v for v in report.notable if v.verdict is not Verdict.UNTESTABLE]
    (relay,) = [v for v in report.notable if v.verdict is Verdict.UNTESTABLE]
    assert relay.source == RELAY and relay.cause is not None
    assert f"the mirror {archive.mirror} has no {missing} (no such file), still after 4 tries" in relay.cause
    assert relay.new is RunResult.UNTESTABLE and relay.new_log_artifact_id is None
    assert greeter.source == "greeter-debflow" and greeter.verdict is Verdict.REGRESSION
    assert greeter.attempts == 2  # confirmed by a re-run of the new side
    assert greeter.new is RunResult.FAIL and greeter.reference is RunResult.PASS
    assert greeter.regressed_tests == ["relays-greeting"]
    assert greeter.new_log_artifact_id and greeter.reference_log_artifact_id
    logs = store.files_of([greeter.new_log_artifact_id, greeter.reference_log_artifact_id])
    new_log = logs[greeter.new_log_artifact_id]["log"].read_text()
    reference_log = logs[greeter.reference_log_artifact_id]["log"].read_text()
    # The new side ran with the upload's binaries, the reference side with the suite's.
    assert "Howdy from debflow" in new_log
    assert "Howdy" not in reference_log and "Hello from debflow" in reference_log
    artifact = store.artifacts([greeter.new_log_artifact_id])[greeter.new_log_artifact_id]
    assert artifact.data["virt_server"] == "host:null" and artifact.data["exit_code"] == 4
    assert left_on_the_host(list(PACKAGES)) == [], "the host executor must remove what the tests installed"
    # Both runs of the untestable target are infrastructure errors in the task history (`debflow status`).
    batch = f"{run.campaign_id}-amd64-batch-0000"
    with sessions() as session:
        runs = session.scalars(
            select(TaskHistory).where(TaskHistory.workflow_id == batch, TaskHistory.subject == RELAY)
        ).all()
    assert sorted(r.context.rsplit("/", 1)[1] for r in runs) == ["new", "reference"]
    assert {r.result for r in runs} == {"error"} and all(missing in r.data["cause"] for r in runs)
    await replay(client, run.campaign_id, "campaign-root-real-untestable")
    await replay(client, batch, "campaign-batch-real-untestable")
    # Then a maintainer follows the regression on the results site, in a real browser.
    await follow_the_regression(browser, settings, sessions, store, run, tmp_path)


async def test_real_campaign_without_the_upload_binaries_is_refused(
    client: Client, settings: Settings, worker: None
) -> None:
    params = CampaignInput(trigger_source="hello-debflow", trigger_version="1.1", suite="bookworm")
    handle = await start_campaign(client, params, settings.task_queue)
    try:
        await handle.result()
    except WorkflowFailureError as e:
        assert "needs the upload's source and binaries" in str(e.cause)
    else:
        raise AssertionError("a real campaign without binaries ran")
