"""blhc (build log hardening check) on a build log: its buildd tags, and its readable warnings."""

from __future__ import annotations

from pathlib import Path

from activities.tools.executors import Hooks, run_hooked
from activities.tools.process import ProcessOutcome
from models.vocabulary import TaskResult

# blhc's exit status is a bit mask; 2 is its own error (invalid arguments). In --buildd mode it exits 0
# unless something went wrong, and reports as tags: W-… are findings, I-… information.
INVALID_ARGUMENTS = 2
# Debian's gcc builds PIE by default: --debian leaves PIE flags out, --all checks every other flag
# whatever the log's own hints (bindnow), as Debian's buildd logs are read.
OPTIONS = ["--debian", "--all"]


def run_blhc(log_file: Path, *, workdir: Path, output: Path, buildd: bool, hooks: Hooks) -> ProcessOutcome:
    return run_hooked(
        ["blhc", *OPTIONS, *(["--buildd"] if buildd else ["--line-numbers"]), str(log_file)],
        cwd=workdir,
        log=output,
        env={"LC_ALL": "C.UTF-8"},
        hooks=hooks,
    )


def parse_tags(output: str) -> list[str]:
    """The tag lines of `blhc --buildd` ("W-dpkg-buildflags-missing|CFLAGS 1 (of 1) missing|")."""
    return [line.strip() for line in output.split("\n") if line[:2] in ("W-", "I-", "E-")]


def blhc_result(tags: list[str]) -> TaskResult:
    """A warning (missing flags, hidden compiler flags) fails the check; information does not."""
    return TaskResult.FAILURE if any(t.startswith(("W-", "E-")) for t in tags) else TaskResult.SUCCESS


def summarize(tags: list[str]) -> str:
    """ "W-dpkg-buildflags-missing (CFLAGS 1 (of 1) missing)" per tag, or that none is missing."""
    if not tags:
        return "no missing hardening flags"
    parts = []
    for tag in tags:
        name, _, rest = tag.partition("|")
        detail = rest.split("|", 1)[0]
        parts.append(f"{name} ({detail})" if detail else name)
    return "; ".join(parts)
