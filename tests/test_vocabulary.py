"""One vocabulary: autopkgtest exit codes read one way everywhere, and activity names both sides share."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.tools.process import ProcessOutcome
from activities.tools.runs import TestRun
from models.artifacts import AutopkgtestTestResult
from models.campaign import RunResult
from models.verdicts import INFRASTRUCTURE_EXIT_CODES, run_result
from models.vocabulary import ActivityName, TaskResult, TestOutcome, autopkgtest_outcome, autopkgtest_result
from worker.main import build_worker
from worker.settings import PROJECT_ROOT, Settings

# debci's reading of autopkgtest(1)'s exit codes.
DEBCI = {
    0: TestOutcome.PASS,
    2: TestOutcome.PASS,
    4: TestOutcome.FAIL,
    6: TestOutcome.FAIL,
    12: TestOutcome.FAIL,
    14: TestOutcome.FAIL,
    8: TestOutcome.NEUTRAL,
    16: TestOutcome.TEMPFAIL,
    20: TestOutcome.TEMPFAIL,
}
# What a campaign's verdicts make of a run, by the word an artifact stores.
RUN_RESULT_OF = {
    TaskResult.SUCCESS: RunResult.PASS,
    TaskResult.FAILURE: RunResult.FAIL,
    TaskResult.SKIPPED: RunResult.NEUTRAL,
    TaskResult.ERROR: None,  # retried, never a verdict
}


def test_exit_codes_follow_debci() -> None:
    assert {code: autopkgtest_outcome(code) for code in DEBCI} == DEBCI
    assert frozenset({16, 20}) == INFRASTRUCTURE_EXIT_CODES


@pytest.mark.parametrize("code", sorted(DEBCI))
def test_every_artifact_stores_one_result_per_exit_code(code: int) -> None:
    """The upload's and the campaign run's debian:autopkgtest artifacts are both made by TestRun.data;
    what they store agrees with the campaign's verdict of the same code (exit 8: skipped and NEUTRAL,
    where a campaign run stored `success` before)."""
    run = TestRun(
        outcome=ProcessOutcome(
            returncode=code, duration_s=1.0, cpu_user_s=0.0, cpu_system_s=0.0, max_rss_kb=0
        ),
        tests={"t": AutopkgtestTestResult(status="SKIP")},
        files={},
        environment_s=0.0,
    )
    stored = run.data(
        source="s", version="1", architecture="amd64", suite="sid", virt_server="host:null", duration_s=1.0
    )
    assert stored.result == autopkgtest_result(code)
    assert RUN_RESULT_OF[TaskResult(stored.result)] == run_result(code)
    if code == 8:
        assert stored.result == TaskResult.SKIPPED


def _activity_name(fn: object) -> str:
    definition = getattr(fn, "__temporal_activity_definition")  # set by @activity.defn
    return str(definition.name)


def _names_called_in_workflows() -> set[str]:
    """Activity names workflows pass as plain strings to execute_activity / start_activity."""
    found = set()
    for path in sorted((PROJECT_ROOT / "workflows").glob("*.py")):
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute_activity", "start_activity")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value))
    return found


async def test_every_activity_name_is_registered_on_a_worker(
    client: Client, settings: Settings, database_url: str
) -> None:
    parts = build_worker(client, settings, database_url, task_queue="vocabulary-registry")
    try:
        registered = [_activity_name(fn) for fns in parts.activities.values() for fn in fns]
    finally:
        parts.close()
    assert sorted(registered) == sorted(set(registered)), "an activity is registered twice"
    assert set(registered) == {str(name) for name in ActivityName}
    assert _names_called_in_workflows() <= set(registered)
