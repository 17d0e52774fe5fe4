"""The opt-in QA checks of an upload: debdiff against the suite's version (with a lintian tag diff), blhc on
the build log, piuparts in a user-namespace testbed — real tools on the examples and a real local archive."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.qa.blhc import blhc_result, parse_tags, summarize
from activities.qa.debdiff import parse_binary_debdiff, source_summary, tag_diff
from activities.qa.piuparts import SETUP_FAILED, ready_for_verdict, run_piuparts
from activities.qa.piuparts import summarize as piuparts_summary
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite
from activities.tools.environments import EnvironmentStore
from activities.tools.executors import Hooks
from activities.tools.process import Cancelled
from activities.uploads.timeouts import TimeoutEstimator
from client.api import submit_upload
from client.check_details import print_upload_details
from client.local_archive import build_local_archive, run, variant
from models.artifacts import BlhcData, DebdiffData, LintianTag, PiupartsData
from models.payloads import (
    Check,
    EstimateTimeoutsInput,
    TaskResult,
    TaskStatus,
    TaskTimeouts,
    parse_checks,
)
from models.tables import Artifact, TaskHistory
from models.vocabulary import ArtifactCategory
from tests.conftest import row_counts, store_files, subprocess_env
from tests.test_pipeline import replay, tasks_by_name, worker_with
from tests.test_unshare import cached_tarball  # noqa: F401 (a fixture)
from worker.settings import PROJECT_ROOT, Settings
from workflows.pipeline_tasks import CHECKS, QA_CHECKS, PipelineTasks

EXAMPLES = PROJECT_ROOT / "examples"


def test_an_unknown_check_is_one_error_and_nothing_is_stored(
    settings: Settings, engine: Engine, example_sources: dict[str, Path]
) -> None:
    before, files = row_counts(engine), store_files(settings.store_dir)
    args = ["submit", str(example_sources["hello-debflow"]), "--check", "debdiff", "--check", "piupart"]
    result = subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        env={**subprocess_env(settings), "COLUMNS": "300"},
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown check 'piupart'"), result.stderr
    assert "debdiff, blhc, piuparts" in lines[0]
    assert row_counts(engine) == before and store_files(settings.store_dir) == files


def test_naming_a_check_runs_the_build_and_names_each_once() -> None:
    assert parse_checks(["blhc", "debdiff", "blhc"]) == [Check.BUILD, Check.BLHC, Check.DEBDIFF]
    assert parse_checks(["build"]) == [Check.BUILD]
    with pytest.raises(ValueError, match="unknown check ''"):
        parse_checks([""])


def test_debdiff_output_is_read_per_section() -> None:
    binary = (
        "[The following lists of changes regard files as different if they have\n"
        "different names, permissions or owners.]\n\n"
        "Files in second .deb but not in first\n-------------------------------------\n"
        "-rw-r--r--  root/root   /usr/share/doc/x/NEWS\n\n"
        "Files in first .deb but not in second\n-------------------------------------\n"
        "-rw-r--r--  root/root   /usr/share/man/man1/x.1.gz\n\n"
        "Control files: lines which differ (wdiff format)\n"
        "------------------------------------------------\n"
        "[-Depends: libc6-] {+all+}\nVersion: [-1.0-] {+1.1+}\n"
    )
    added, removed, control = parse_binary_debdiff(binary)
    assert added == ["/usr/share/doc/x/NEWS"] and removed == ["/usr/share/man/man1/x.1.gz"]
    assert control == ["[-Depends: libc6-] {+all+}", "Version: [-1.0-] {+1.1+}"]
    diff = "diff -Nru a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-old\n+new\n+more\n same\n"
    assert source_summary(diff) == (1, 2, 1)


def test_lintian_tags_are_compared_without_their_versions() -> None:
    def tag(name: str, note: str = "") -> LintianTag:
        return LintianTag(severity="warning", package="x", package_type="binary", tag=name, note=note)

    suite = [tag("old-tag"), tag("kept", "x 1.0 here")]
    upload = [tag("kept", "x 1.1 here"), tag("new-tag")]
    new, resolved = tag_diff(suite, "1.0", upload, "1.1")
    assert [t.tag for t in new] == ["new-tag"] and [t.tag for t in resolved] == ["old-tag"]


def test_blhc_warnings_fail_and_information_does_not() -> None:
    tags = parse_tags("W-dpkg-buildflags-missing|CFLAGS 1 (of 1) missing|\nsome other line\n")
    assert tags == ["W-dpkg-buildflags-missing|CFLAGS 1 (of 1) missing|"]
    assert blhc_result(tags) is TaskResult.FAILURE
    assert blhc_result(["I-no-compiler-commands||"]) is TaskResult.SUCCESS
    assert summarize(tags) == "W-dpkg-buildflags-missing (CFLAGS 1 (of 1) missing)"


def careless_hello(root: Path) -> Path:
    """hello-debflow 1.1 that drops CFLAGS from its compiler line (blhc) and its manual page (debdiff
    lists the file removed; lintian a new tag)."""
    tree = variant(
        EXAMPLES / "hello-debflow",
        root / "hello-debflow",
        version="1.1",
        replacements={"Makefile": ("$(CPPFLAGS) $(CFLAGS) -o", "$(CPPFLAGS) -o")},
        changelog="Build without the manual page.",
    )
    (tree / "debian" / "hello-debflow.manpages").unlink()
    run(["dpkg-source", "-b", tree.name], root)
    return root / "hello-debflow_1.1.dsc"


@pytest.mark.slow
async def test_debdiff_blhc_and_piuparts_check_an_upload_against_the_suite(
    client: Client,
    settings: Settings,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    cached_tarball: tuple[Path, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    for tool in ("debdiff", "blhc", "piuparts", "newuidmap"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/ensure-debian-tools as root"
    suite = f"qa-{uuid.uuid4().hex[:8]}"
    archive = await asyncio.to_thread(
        build_local_archive, tmp_path / "mirror", [EXAMPLES / "hello-debflow"], suite=suite
    )
    import_suite(
        sessions=sessions,
        name=suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
        mirror=archive.mirror,
    )
    # The suite's environment: the bookworm tarball (the local suite holds hello-debflow only; its
    # dependencies come from bookworm, as the tarball's apt sources say).
    tarball, mirror = cached_tarball
    settings.mirror = mirror
    settings.suites = [*settings.suites, suite]
    environments = EnvironmentStore(
        store=store, mirror=mirror, cache_dir=tmp_path / "env", max_age_days=7, expiration_days=30
    )
    environments.import_tarball(tarball, suite, "amd64")
    (tmp_path / "upload").mkdir()
    dsc = await asyncio.to_thread(careless_hello, tmp_path / "upload")

    async with worker_with(client, settings):
        checks = [Check.BUILD, Check.DEBDIFF, Check.BLHC, Check.PIUPARTS]
        handle = await submit_upload(
            client, settings, settings.database_url or "", dsc, suite=suite, checks=checks, again=True
        )
        report = await asyncio.wait_for(handle.result(), timeout=900)
        # A second upload against the same suite version reuses the suite's lintian run.
        again = await submit_upload(
            client,
            settings,
            settings.database_url or "",
            dsc,
            suite=suite,
            checks=[Check.BUILD, Check.DEBDIFF],
            again=True,
        )
        second = await asyncio.wait_for(again.result(), timeout=600)

    tasks = tasks_by_name(report)
    assert set(tasks) == {"build", "lintian", "autopkgtest", "debdiff", "blhc", "piuparts"}
    assert tasks["lintian"].status is TaskStatus.SKIPPED  # not named: only what the submit named runs
    assert tasks["debdiff"].result is TaskResult.SUCCESS, tasks["debdiff"].summary
    assert tasks["blhc"].result is TaskResult.FAILURE, tasks["blhc"].summary
    assert tasks["piuparts"].result is TaskResult.SUCCESS, tasks["piuparts"].summary
    assert "CFLAGS" in tasks["blhc"].summary
    assert tasks["piuparts"].summary == "PASS: All tests. (upgrade from 1.0)", tasks["piuparts"].summary

    found = store.artifacts([tasks[n].artifact_ids[0] for n in ("debdiff", "blhc", "piuparts")])
    by_category = {a.category: a for a in found.values()}
    diff = DebdiffData.model_validate(by_category[ArtifactCategory.DEBDIFF].data)
    assert diff.suite_version == "1.0" and diff.files_changed >= 3  # changelog, Makefile, manpages
    binaries = {b.package: b for b in diff.binaries}
    assert set(binaries) == {"hello-debflow", "hello-debflow-doc"}  # no -dbgsym: not in the suite
    assert binaries["hello-debflow"].files_removed == ["/usr/share/man/man1/hello-debflow.1.gz"]
    assert "Version: [-1.0-] {+1.1+}" in binaries["hello-debflow"].control_changes
    assert "no-manual-page" in [t.tag for t in diff.new_tags], diff.new_tags
    blhc = BlhcData.model_validate(by_category[ArtifactCategory.BLHC].data)
    assert any(t.startswith("W-dpkg-buildflags-missing|CFLAGS") for t in blhc.tags), blhc.tags
    piuparts = PiupartsData.model_validate(by_category[ArtifactCategory.PIUPARTS].data)
    assert piuparts.upgrade_from == "1.0" and piuparts.exit_code == 0
    log = store.files_of([by_category[ArtifactCategory.PIUPARTS].id])[
        by_category[ArtifactCategory.PIUPARTS].id
    ]
    text = log["piuparts.log"].read_text()
    assert "PASS: Installation, upgrade and purging tests." in text, text[-2000:]

    # The report shows the summaries under the task table.
    console = Console(record=True, width=200)
    stored = store.artifacts([i for t in report.tasks for i in t.artifact_ids])
    print_upload_details(report, {i: (a.category, a.data) for i, a in stored.items()}, console)
    shown = console.export_text()
    assert f"against {suite} 1.0: source" in shown and "-/usr/share/man/man1/hello-debflow.1.gz" in shown
    assert "no-manual-page" in shown and "W-dpkg-buildflags-missing|CFLAGS" in shown
    assert "upgrade from 1.0" in shown

    second_diff = tasks_by_name(second)["debdiff"]
    assert second_diff.result is TaskResult.SUCCESS
    second_data = store.artifacts(second_diff.artifact_ids)[second_diff.artifact_ids[0]].data
    assert second_data["suite_lintian_artifact_id"] == diff.suite_lintian_artifact_id
    with sessions() as session:
        suite_lint = session.get(Artifact, diff.suite_lintian_artifact_id)
        assert suite_lint is not None and suite_lint.data["version"] == "1.0"
        names = session.scalars(
            select(TaskHistory.task_name).where(TaskHistory.workflow_id == handle.id)
        ).all()
    assert {"debdiff", "blhc", "piuparts"} <= set(names)
    await replay(client, handle.id, "upload-pipeline-v5-qa-checks")


def leftover_deb(root: Path) -> Path:
    """A package whose maintainer script leaves a file behind when it is purged: piuparts fails it."""
    tree = root / "debflow-leftover"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: debflow-leftover\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: debflow developers <debflow@example.org>\n"
        "Description: leaves a file behind (debflow tests)\n"
    )
    postinst = tree / "DEBIAN" / "postinst"
    postinst.write_text(
        "#!/bin/sh\nset -e\nmkdir -p /var/lib/debflow-leftover\necho x > /var/lib/debflow-leftover/state\n"
    )
    postinst.chmod(0o755)
    run(["dpkg-deb", "--root-owner-group", "--build", tree.name, "debflow-leftover_1.0_all.deb"], root)
    return root / "debflow-leftover_1.0_all.deb"


@pytest.mark.slow
def test_a_piuparts_failure_is_a_verdict_and_the_host_is_untouched(
    cached_tarball: tuple[Path, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    deb = leftover_deb(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    found = run_piuparts(cached_tarball[0], [deb], [], workdir=work, hooks=Hooks())
    assert found.ready, found.log.read_text()[-2000:]  # the testbed came up: a verdict, not a fault
    assert found.outcome.returncode != 0 and found.result is TaskResult.FAILURE
    assert "/var/lib/debflow-leftover" in found.log.read_text()
    assert found.summary.startswith("FAIL: Package purging left files on system"), found.summary
    # The maintainer script ran as the testbed's root, never on this host.
    assert not Path("/var/lib/debflow-leftover").exists()
    testbeds = set(re.findall(r"/\S*/debflow-piuparts-[a-z0-9_]+", found.log.read_text()))
    assert len(testbeds) == 1 and not Path(testbeds.pop()).exists(), "the testbed is removed"


def test_the_qa_checks_take_their_timeouts_from_task_history(sessions: sessionmaker[Session]) -> None:
    source = f"qa-timed-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        for task, seconds in [("piuparts", 200.0), ("piuparts", 250.0), ("piuparts", 300.0), ("blhc", 2.0)]:
            TaskHistoryWriter().add(
                session,
                task_name=task,
                subject=source,
                context=f"{source}/amd64",
                workflow_id=None,
                started_at=now,
                duration_s=seconds,
                result="failure" if task == "piuparts" else "success",  # a verdict counts either way
                usage=[],
            )
    estimator = TimeoutEstimator(sessions=sessions, floor_s=60, factor=4, min_samples=3)
    defaults = TaskTimeouts(build_s=3600, lintian_s=1800, autopkgtest_s=7200)
    found = ActivityEnvironment().run(
        estimator.estimate_timeouts,
        EstimateTimeoutsInput(source=source, suite=source, architectures=["amd64"], defaults=defaults),
    )
    # p95 of 200, 250, 300 is 295; 4 x 295 = 1180 within [60, 7200] (autopkgtest's ceiling).
    assert found.timeouts["piuparts/amd64"] == pytest.approx(1180)
    assert found.timeouts["blhc/amd64"] == 1800  # one run: lintian's ceiling
    assert found.timeouts["debdiff/amd64"] == 1800


def test_a_run_has_reports_for_the_qa_checks_it_was_asked_for_only() -> None:
    tasks = PipelineTasks()
    tasks.add(["amd64", "arm64"], ("blhc",))
    amd64 = [t.name for t in tasks.all() if t.architecture == "amd64"]
    assert amd64 == ["build", "lintian", "autopkgtest", "blhc"]
    tasks.skip("arm64", (*CHECKS, *QA_CHECKS), "build failed")  # piuparts, debdiff: not this run's
    assert tasks.get("blhc", "arm64").status is TaskStatus.SKIPPED
    tasks.complete(
        "blhc",
        "amd64",
        result=TaskResult.FAILURE,
        artifact_ids=[1],
        duration_s=1.0,
        summary="W-dpkg-buildflags-missing",
        tries=1,
        reused=False,
    )
    (step,) = tasks.retry_plan(["amd64", "arm64"], {"amd64"})
    assert step.architecture == "amd64" and step.checks == ("blhc",) and not step.rebuild


def test_piuparts_is_a_verdict_only_once_its_testbed_came_up() -> None:
    up = "0m7.3s DEBUG: Command ok: ['chroot', '/tmp/t/c', 'apt-get', 'update']\n"
    down = "0m7.3s DEBUG: Command failed (status=100): ['chroot', '/tmp/t/c', 'apt-get', 'update']\n"
    failed = "0m40s ERROR: FAIL: Package purging left files on system:\n0m41s ERROR: piuparts run ends.\n"
    assert ready_for_verdict(1, up + failed) and not ready_for_verdict(1, down + failed)
    assert not ready_for_verdict(SETUP_FAILED, up)
    assert piuparts_summary(up + failed) == "FAIL: Package purging left files on system:"
    assert piuparts_summary(up + "0m30s INFO: PASS: All tests.\n") == "PASS: All tests."


def _namespace_processes() -> dict[int, str]:
    """Processes of piuparts testbeds (the argv of run_piuparts' `sh -c` names it), pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "debflow-piuparts-" in argv:
                found[int(entry.name)] = argv
    return found


@pytest.mark.slow
def test_cancelling_piuparts_kills_its_namespace_and_removes_the_testbed(
    cached_tarball: tuple[Path, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    seen: dict[int, str] = {}

    def cancelled() -> bool:
        # Cancel once piuparts itself runs in its namespace (not while the testbed is being copied).
        running = {p: a for p, a in _namespace_processes().items() if a.startswith("/usr/bin/python3 ")}
        seen.update(running)
        return bool(running)

    with pytest.raises(Cancelled):
        run_piuparts(
            cached_tarball[0],
            [leftover_deb(tmp_path)],
            [],
            workdir=work,
            hooks=Hooks(cancelled=cancelled, interval=0.5),
        )
    assert seen, "piuparts never ran"
    (testbed,) = {re.search(r"/\S*/debflow-piuparts-[a-z0-9_]+", a).group(0) for a in seen.values()}  # type: ignore[union-attr]
    assert not [p for p, argv in _namespace_processes().items() if testbed in argv], "processes outlived it"
    assert not Path(testbed).exists()
