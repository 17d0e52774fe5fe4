"""Running tools: output parsing, process groups, cancellation, missing tools."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.debian.parsing import describe_tests, parse_autopkgtest_summary, parse_lintian
from activities.storage.store import ArtifactStore
from activities.tools.executors import HostExecutor
from activities.tools.process import Cancelled, run_tool
from activities.tools.runs import ToolRuns
from activities.uploads.debian_tasks import DebianTasks
from client.api import store_source_package
from models.payloads import CheckInput, TaskResult
from models.vocabulary import autopkgtest_result
from worker.settings import Settings


def test_lintian_lines_are_parsed() -> None:
    output = "\n".join(
        [
            "W: broken-debflow: no-manual-page [usr/bin/broken-debflow]",
            "E: hello source: source-is-missing [hello.min.js]",
            "I: hello-doc: extended-description-is-probably-too-short",
            "N: an explanation line that is not a tag",
            "running with root privileges is not recommended!",
        ]
    )
    tags = parse_lintian(output)
    assert [(t.severity, t.package, t.package_type, t.tag, t.note) for t in tags] == [
        ("warning", "broken-debflow", "binary", "no-manual-page", "[usr/bin/broken-debflow]"),
        ("error", "hello", "source", "source-is-missing", "[hello.min.js]"),
        ("info", "hello-doc", "binary", "extended-description-is-probably-too-short", ""),
    ]


def test_autopkgtest_summary_and_exit_codes() -> None:
    summary = "runs                 PASS\nalways-fails         FAIL non-zero exit status 1\nx SKIP no root\n"
    results = parse_autopkgtest_summary(summary)
    assert {k: v.status for k, v in results.items()} == {"runs": "PASS", "always-fails": "FAIL", "x": "SKIP"}
    assert results["always-fails"].details == "non-zero exit status 1"
    assert [autopkgtest_result(c) for c in (0, 2, 4, 8, 12, 16, 20)] == [
        TaskResult.SUCCESS,
        TaskResult.SUCCESS,
        TaskResult.FAILURE,
        TaskResult.SKIPPED,
        TaskResult.FAILURE,
        TaskResult.ERROR,
        TaskResult.ERROR,
    ]


def test_summaries_tell_no_test_ran_from_passed_with_skips() -> None:
    """Exit 8 (no tests, or every test skipped or superficial) never reads as tests having passed."""

    def describe(exit_code: int, summary: str) -> str:
        return describe_tests(exit_code, parse_autopkgtest_summary(summary))

    # autopkgtest's own summary lines, as it writes them ("%-20s %s")
    none = "*                    SKIP no tests in this package\n"
    superficial = "imports              PASS (superficial)\nsyntax               PASS (superficial)\n"
    skipped = "needs-root           SKIP Test needs root on testbed which is not available\n"
    real = "autodep8-perl-build-deps PASS\n"
    assert parse_autopkgtest_summary(none) == {}
    assert [t.superficial for t in parse_autopkgtest_summary(superficial + real).values()] == [
        True,
        True,
        False,
    ]
    assert parse_autopkgtest_summary(skipped)["needs-root"].details.startswith("Test needs root")
    assert describe(8, none) == "no test ran: the package has no tests (exit 8)"
    assert describe(8, superficial) == "no test ran for real: 2 passed only superficially (exit 8)"
    assert describe(8, skipped) == "no test ran: 1 skipped (exit 8)"
    assert describe(8, superficial + skipped) == (
        "no test ran for real: 2 passed only superficially, 1 skipped (exit 8)"
    )
    assert describe(2, real + skipped) == "2 tests: 1 passed, 1 skipped (exit 2)"
    assert describe(0, real + superficial) == "3 tests: 1 passed, 2 passed only superficially (exit 0)"
    assert describe(4, real + "fails                FAIL non-zero exit status 1\n") == (
        "2 tests: 1 passed, 1 failed (exit 4)"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = tmp_path / "tool.sh"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n")
    script.chmod(0o755)
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    ticks: list[float] = []
    with pytest.raises(Cancelled):
        run_tool(
            [str(script)],
            cwd=tmp_path,
            log=tmp_path / "log",
            tick=ticks.append,
            cancelled=cancel.is_set,
            tick_interval=0.2,
        )
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)
    assert ticks  # it heartbeated while running


def test_exit_code_and_usage_are_reported(tmp_path: Path) -> None:
    outcome = run_tool(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, log=tmp_path / "log")
    assert outcome.returncode == 3
    assert (tmp_path / "log").read_text() == "out\nerr\n"
    assert outcome.max_rss_kb > 0


def test_missing_tool_is_a_non_retryable_error_naming_the_package(
    settings: Settings,
    store: ArtifactStore,
    example_sources: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    artifact_id, source, version = store_source_package(
        settings, settings.database_url or "", example_sources["hello-debflow"]
    )
    tasks = DebianTasks(
        ToolRuns(
            sessions=store.sessions,
            store=store,
            executor=HostExecutor(),
            scratch_dir=tmp_path,
            heartbeat_interval=1,
            expiration_days=1,
        )
    )
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            tasks.run_lintian,
            CheckInput(
                upload_artifact_id=artifact_id,
                binary_artifact_ids=[],
                source=source,
                version=version,
                suite="bookworm",
                architecture="amd64",
            ),
        )
    assert raised.value.non_retryable
    assert "apt-get install lintian" in str(raised.value)
