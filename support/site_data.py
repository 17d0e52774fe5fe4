"""Results stored the way the activities store them (ArtifactStore.register, the campaign's
store_verdicts, TaskHistoryWriter.record), for the site's tests and bench/web_pages.py: fast, no tool runs."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from activities.campaigns.campaign_verdicts import store_verdicts
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore, NewArtifact
from models.campaign import RunResult, TargetVerdict, Verdict
from models.vocabulary import ArtifactCategory, TaskName, autopkgtest_result

EXIT = {RunResult.PASS: 0, RunResult.FAIL: 4, RunResult.NEUTRAL: 8}


@dataclass
class Run:
    """One autopkgtest run to store: its log text and per-test statuses."""

    source: str
    version: str
    suite: str
    architecture: str
    exit_code: int
    log: str
    tests: dict[str, str] = field(default_factory=dict)
    duration_s: float = 12.0


def _autopkgtest(run: Run, files: dict[str, Path]) -> NewArtifact:
    data = {
        "source": run.source,
        "version": run.version,
        "architecture": run.architecture,
        "suite": run.suite,
        "result": str(autopkgtest_result(run.exit_code)),
        "exit_code": run.exit_code,
        "virt_server": "host:null",
        "tests": {name: {"status": status} for name, status in run.tests.items()},
        "duration_s": run.duration_s,
    }
    return NewArtifact(category=ArtifactCategory.AUTOPKGTEST, data=data, files=files)


def store_runs(store: ArtifactStore, runs: list[Run], *, workflow_id: str, scratch: Path) -> list[int]:
    """Register the runs' artifacts with their logs in one transaction; returns their ids in order."""
    artifacts = []
    for i, run in enumerate(runs):
        log = scratch / f"log-{i}"
        log.write_text(run.log)
        artifacts.append(_autopkgtest(run, {"log": log}))
    return store.register(artifacts, workflow_id=workflow_id, activity_id="seed")


def store_upload(
    store: ArtifactStore, sessions: sessionmaker[Session], *, workflow_id: str, run: Run, scratch: Path
) -> dict[str, int]:
    """An upload run's build log, lintian tags and autopkgtest run, with their task-history rows."""
    build_log, lintian_out = scratch / "build.log", scratch / "lintian.txt"
    build_log.write_text(
        f"dpkg-buildpackage: info: source package {run.source}\nbuild of {run.version} done\n"
    )
    lintian_out.write_text(f"W: {run.source}: initial-upload-closes-no-bugs\n")
    log = scratch / "autopkgtest.log"
    log.write_text(run.log)
    common = {"source": run.source, "version": run.version, "architecture": run.architecture}
    ids = store.register(
        [
            NewArtifact(
                ArtifactCategory.PACKAGE_BUILD_LOG,
                {**common, "filename": "build.log", "exit_code": 0, "result": "success", "duration_s": 30.0},
                {"build.log": build_log},
            ),
            NewArtifact(
                ArtifactCategory.LINTIAN,
                {
                    **common,
                    "result": "success",
                    "exit_code": 0,
                    "lintian_version": "2.116",
                    "counts": {"warning": 1},
                    "tags": [
                        {
                            "severity": "warning",
                            "package": run.source,
                            "package_type": "source",
                            "tag": "initial-upload-closes-no-bugs",
                            "note": "",
                        }
                    ],
                    "duration_s": 5.0,
                },
                {"lintian.txt": lintian_out},
            ),
            _autopkgtest(run, {"log": log}),
        ],
        workflow_id=workflow_id,
        activity_id="seed",
    )
    now = dt.datetime.now(dt.UTC)
    TaskHistoryWriter().record(
        sessions,
        [
            {
                "task_name": name,
                "subject": run.source,
                "context": f"{run.suite}/{run.architecture}",
                "worker": "seed",
                "workflow_id": workflow_id,
                "started_at": now,
                "duration_s": seconds,
                "result": result,
                "data": {"version": run.version},
            }
            for name, seconds, result in (
                (TaskName.BUILD, 30.0, "success"),
                (TaskName.LINTIAN, 5.0, "success"),
                (TaskName.AUTOPKGTEST, run.duration_s, str(autopkgtest_result(run.exit_code))),
            )
        ],
    )
    return {"build": ids[0], "lintian": ids[1], "autopkgtest": ids[2]}


@dataclass
class Target:
    """A campaign target: its new and reference runs."""

    source: str
    version: str
    new: RunResult
    reference: RunResult
    new_tests: dict[str, str] = field(default_factory=dict)
    reference_tests: dict[str, str] = field(default_factory=dict)
    new_log: str = "all tests passed\n"
    reference_log: str = "all tests passed\n"
    verdict: Verdict | None = None  # default: britney's comparison
    attempts: int = 1


def store_campaign(
    store: ArtifactStore,
    sessions: sessionmaker[Session],
    *,
    campaign_id: str,
    suite: str,
    architecture: str,
    targets: list[Target],
    chunk: int = 500,
) -> list[TargetVerdict]:
    """Both sides' logs (in the campaign's batch workflow, as real runs store them) and every verdict."""
    from models.verdicts import compare, regressed_tests

    batch = f"{campaign_id}-{architecture}-batch-0000"
    verdicts: list[TargetVerdict] = []
    with tempfile.TemporaryDirectory(prefix="debflow-seed-") as scratch:
        for start in range(0, len(targets), chunk):
            part = targets[start : start + chunk]
            runs = []
            for t in part:
                runs.append(
                    Run(t.source, t.version, suite, architecture, EXIT[t.new], t.new_log, t.new_tests)
                )
                runs.append(
                    Run(
                        t.source,
                        t.version,
                        suite,
                        architecture,
                        EXIT[t.reference],
                        t.reference_log,
                        t.reference_tests,
                    )
                )
            ids = store_runs(store, runs, workflow_id=batch, scratch=Path(scratch))
            found = [
                TargetVerdict(
                    source=t.source,
                    version=t.version,
                    architecture=architecture,
                    verdict=t.verdict or compare(t.new, t.reference),
                    new=t.new,
                    reference=t.reference,
                    regressed_tests=regressed_tests(t.new_tests, t.reference_tests),
                    new_log_artifact_id=ids[2 * i],
                    reference_log_artifact_id=ids[2 * i + 1],
                    attempts=t.attempts,
                )
                for i, t in enumerate(part)
            ]
            with sessions.begin() as session:
                store_verdicts(session, suite=suite, campaign_id=campaign_id, verdicts=found)
            TaskHistoryWriter().record(
                sessions, [_history(batch, suite, architecture, r, i) for i, r in enumerate(runs)]
            )
            verdicts += found
    return verdicts


def _history(batch: str, suite: str, architecture: str, run: Run, index: int) -> dict[str, Any]:
    """The task-history row record_runs writes for a run (new and reference sides alternate)."""
    return {
        "task_name": TaskName.AUTOPKGTEST,
        "subject": run.source,
        "context": f"{suite}/{architecture}/{'new' if index % 2 == 0 else 'reference'}",
        "worker": "seed",
        "workflow_id": batch,
        "started_at": dt.datetime.now(dt.UTC),
        "duration_s": run.duration_s,
        "result": str(autopkgtest_result(run.exit_code)),
        "data": {"version": run.version, "attempt": 1},
    }


def seed_summary(verdicts: list[TargetVerdict]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    return counts
