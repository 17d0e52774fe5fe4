"""Tests that come only from autodep8 (`Testsuite: autopkgtest-pkg-perl`) run for real through the pipeline.

Without autodep8 on the worker, autopkgtest prints "SKIP no tests in this package" and exits 8: this
fails then, as it should (scripts/ensure-debian-tools installs it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from client.api import submit_upload
from models.payloads import TaskResult
from models.tables import Artifact
from worker.settings import PROJECT_ROOT, Settings

# Real Debian tools end to end: minutes, not seconds (`pytest -m "not slow"` leaves it out).
pytestmark = pytest.mark.slow

EXAMPLE = PROJECT_ROOT / "examples" / "libdebflow-greeting-perl"


async def test_autodep8_perl_suite_runs_and_passes(
    client: Client,
    settings: Settings,
    worker: None,
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    subprocess.run(["dpkg-source", "-b", str(EXAMPLE)], cwd=tmp_path, check=True, capture_output=True)
    (dsc,) = tmp_path.glob("libdebflow-greeting-perl_*.dsc")
    handle = await submit_upload(client, settings, settings.database_url or "", dsc)
    report = await handle.result()

    tasks = {t.name: t for t in report.tasks}
    assert tasks["autopkgtest"].result == TaskResult.SUCCESS, report
    with sessions() as session:
        found = session.scalar(
            select(Artifact).where(
                Artifact.workflow_id == handle.id, Artifact.category == "debian:autopkgtest"
            )
        )
    assert found is not None
    # autodep8's tests for a Perl module: the module's own t/*.t against the installed package (a real
    # test), then syntax and dependency checks (superficial ones).
    assert found.data["exit_code"] == 0, found.data
    tests = found.data["tests"]
    assert tests["autodep8-perl-build-deps"] == {"status": "PASS", "details": "", "superficial": False}
    assert tests["autodep8-perl"]["superficial"] and tests["autodep8-perl"]["status"] == "PASS"
    assert tasks["autopkgtest"].summary == "3 tests: 1 passed, 2 passed only superficially (exit 0)"
