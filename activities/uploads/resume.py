"""Resuming after a crash: results rebuilt from what an interrupted attempt already stored.

An activity registers its artifacts (and its task-history row) in one transaction, then returns. If the
worker dies, or a fault is injected, between that commit and Temporal receiving the result, the retry
finds the artifacts by (workflow id, activity id) and returns the same result without running the tool
again: no second build, no duplicate artifact, no second history row.
"""

from __future__ import annotations

import logging
from typing import Any

from activities.debian.parsing import describe_tests
from activities.storage.store import StoredArtifact
from models.artifacts import AutopkgtestTestResult
from models.payloads import AutopkgtestResult, BuildResult, LintianResult, TaskResult
from models.vocabulary import ArtifactCategory

log = logging.getLogger("debflow.resume")


def _duration(data: dict[str, Any]) -> float:
    return float(data.get("duration_s") or 0.0)


def build_result_from(stored: list[StoredArtifact], tries: int) -> BuildResult | None:
    """The BuildResult of a build whose outputs are `stored`, or None if it stored nothing yet."""
    build_log = next((a for a in stored if a.category == ArtifactCategory.PACKAGE_BUILD_LOG), None)
    if build_log is None:
        return None
    result = TaskResult(build_log.data["result"])
    changes = next((a for a in stored if a.category == ArtifactCategory.UPLOAD), None)
    binaries = [a for a in stored if a.category == ArtifactCategory.BINARY_PACKAGE]
    packages = [str(b.data["package"]) for b in binaries]
    ok = result is TaskResult.SUCCESS
    return BuildResult(
        result=result,
        exit_code=int(build_log.data["exit_code"]),
        log_artifact_id=build_log.id,
        changes_artifact_id=changes.id if ok and changes else None,
        binary_artifact_ids=[b.id for b in binaries],
        packages=packages,
        duration_s=_duration(build_log.data),
        summary=(
            "built " + ", ".join(packages) if ok else f"build failed (exit {build_log.data['exit_code']})"
        )
        + f" (outputs of an interrupted try reused by try {tries})",
        tries=tries,
        reused=True,
        environment_artifact_id=build_log.data.get("environment_artifact_id"),
    )


def lintian_result_from(stored: list[StoredArtifact], tries: int) -> LintianResult | None:
    found = next((a for a in stored if a.category == ArtifactCategory.LINTIAN), None)
    if found is None:
        return None
    counts = {str(k): int(v) for k, v in found.data["counts"].items()}
    summary = ", ".join(f"{n} {sev}" for sev, n in counts.items()) or "no tags"
    return LintianResult(
        result=TaskResult(found.data["result"]),
        artifact_id=found.id,
        counts=counts,
        duration_s=_duration(found.data),
        summary=f"{summary} (reused by try {tries})",
        tries=tries,
        reused=True,
    )


def autopkgtest_result_from(stored: list[StoredArtifact], tries: int) -> AutopkgtestResult | None:
    found = next((a for a in stored if a.category == ArtifactCategory.AUTOPKGTEST), None)
    if found is None:
        return None
    facts = {str(name): AutopkgtestTestResult.model_validate(t) for name, t in found.data["tests"].items()}
    tests = {name: t.status for name, t in facts.items()}
    exit_code = int(found.data["exit_code"])
    return AutopkgtestResult(
        result=TaskResult(found.data["result"]),
        exit_code=exit_code,
        artifact_id=found.id,
        tests=tests,
        duration_s=_duration(found.data),
        summary=f"{describe_tests(exit_code, facts)} (reused by try {tries})",
        tries=tries,
        reused=True,
    )
