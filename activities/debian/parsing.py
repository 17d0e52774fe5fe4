"""Turning tool output into data: lintian tags and autopkgtest summaries."""

from __future__ import annotations

import re

from models.artifacts import AutopkgtestTestResult, LintianTag

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


# "greets               PASS" / "fails                FAIL non-zero exit status 1" /
# "imports              PASS (superficial)" / "*                    SKIP no tests in this package"
SUMMARY_LINE = re.compile(
    r"^(?P<name>\S+)\s+(?P<status>PASS|FAIL|SKIP|FLAKY|NEUTRAL|BROKEN)(?:\s+(?P<details>.*))?$"
)
SUPERFICIAL = "(superficial)"
STATUSES = {
    "PASS": "passed",
    "FAIL": "failed",
    "FLAKY": "failed but flaky",
    "SKIP": "skipped",
    "BROKEN": "broken",
    "NEUTRAL": "neutral",
}


def parse_autopkgtest_summary(text: str) -> dict[str, AutopkgtestTestResult]:
    """The tests of autopkgtest's summary file. Its "*" line ("SKIP no tests in this package") is not a
    test: a package without tests has none here."""
    results: dict[str, AutopkgtestTestResult] = {}
    for line in text.splitlines():
        match = SUMMARY_LINE.match(line.strip())
        if match and match["name"] != "*":
            details = (match["details"] or "").strip()
            superficial = match["status"] == "PASS" and details == SUPERFICIAL
            results[match["name"]] = AutopkgtestTestResult(
                status=match["status"], details="" if superficial else details, superficial=superficial
            )
    return results


def describe_tests(exit_code: int, tests: dict[str, AutopkgtestTestResult]) -> str:
    """One honest line for a run: what passed for real, what only superficially, what was skipped.

    Exit 8 is autopkgtest's "no test ran": no tests at all, or every test skipped or superficial."""
    count = {
        status: sum(t.status == status and not t.superficial for t in tests.values()) for status in STATUSES
    }
    superficial = sum(t.superficial for t in tests.values())
    parts = [(count["PASS"], "passed"), (superficial, "passed only superficially")]
    parts += [(count[status], what) for status, what in STATUSES.items() if status != "PASS"]
    said = ", ".join(f"{n} {what}" for n, what in parts if n)
    if exit_code == 8:
        if not tests:
            return "no test ran: the package has no tests (exit 8)"
        real = " for real" if superficial else ""  # the superficial tests did run
        return f"no test ran{real}: {said} (exit 8)"
    return f"{len(tests)} test{'s' if len(tests) != 1 else ''}: {said or 'none'} (exit {exit_code})"
