"""Turning tool output into data: lintian tags and autopkgtest summaries."""

from __future__ import annotations

import re

from models.artifacts import AutopkgtestTestResult, LintianTag
from models.payloads import TaskResult
from models.verdicts import INFRASTRUCTURE_EXIT_CODES

SEVERITIES = {
    "E": "error",
    "W": "warning",
    "I": "info",
    "P": "pedantic",
    "X": "experimental",
    "O": "overridden",
    "C": "classification",
    "M": "masked",
}

# "W: hello-debflow source: tag-name note…" or "E: hello-debflow: tag-name note…"
LINTIAN_LINE = re.compile(
    r"^(?P<code>[EWIPXOCM]): (?P<package>[a-z0-9][a-z0-9+.-]*)(?: (?P<type>source|udeb|changes|buildinfo))?"
    r": (?P<tag>[A-Za-z0-9][A-Za-z0-9+._-]*)(?: (?P<note>.*))?$"
)


def parse_lintian(output: str) -> list[LintianTag]:
    tags = []
    for line in output.splitlines():
        match = LINTIAN_LINE.match(line)
        if match:
            tags.append(
                LintianTag(
                    severity=SEVERITIES[match["code"]],
                    package=match["package"],
                    package_type=match["type"] or "binary",
                    tag=match["tag"],
                    note=(match["note"] or "").strip(),
                )
            )
    return tags


def lintian_counts(tags: list[LintianTag]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tag in tags:
        counts[tag.severity] = counts.get(tag.severity, 0) + 1
    return dict(sorted(counts.items()))


# "greets               PASS" / "fails                FAIL non-zero exit status 1"
SUMMARY_LINE = re.compile(
    r"^(?P<name>\S+)\s+(?P<status>PASS|FAIL|SKIP|FLAKY|NEUTRAL)(?:\s+(?P<details>.*))?$"
)


def parse_autopkgtest_summary(text: str) -> dict[str, AutopkgtestTestResult]:
    results: dict[str, AutopkgtestTestResult] = {}
    for line in text.splitlines():
        match = SUMMARY_LINE.match(line.strip())
        if match:
            results[match["name"]] = AutopkgtestTestResult(
                status=match["status"], details=(match["details"] or "").strip()
            )
    return results


# autopkgtest(1) EXIT STATUS: 0 all pass, 2 some skipped, 4 a test failed, 6 failed and skipped,
# 8 no tests in this package, 12 erroneous package, 14 = 12|2, 16 testbed failure, 20 other problem.


def autopkgtest_result(exit_code: int) -> TaskResult:
    """The verdict for an exit code; infrastructure failures are not verdicts (callers retry them)."""
    if exit_code in (0, 2):
        return TaskResult.SUCCESS
    if exit_code == 8:
        return TaskResult.SKIPPED
    if exit_code in INFRASTRUCTURE_EXIT_CODES:
        return TaskResult.ERROR
    return TaskResult.FAILURE
