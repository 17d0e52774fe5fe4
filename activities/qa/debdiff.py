"""debdiff (devscripts) of an upload against the suite's version, read into a summary: the source diff's
files and lines, per binary package the files added and removed and the control fields changed, and the
lintian tags the upload adds and resolves."""

from __future__ import annotations

import subprocess
from pathlib import Path

from activities.tools.executors import Hooks, run_hooked
from activities.tools.process import ProcessOutcome
from models.artifacts import BinaryDebdiff, DebdiffData, LintianTag

# debdiff exits 0 when nothing differs and 1 when something does; anything else is its own failure.
DIFFERENT = 1
MAX_LISTED = 200  # files listed per package and direction in the artifact's data (the log has them all)


def run_debdiff(
    old: list[Path], new: list[Path], *, workdir: Path, log: Path, hooks: Hooks
) -> ProcessOutcome:
    """`debdiff OLD NEW` (two .dsc, or two .deb), its output in `log`."""
    return run_hooked(
        ["debdiff", *map(str, old), *map(str, new)],
        cwd=workdir,
        log=log,
        env={"LC_ALL": "C.UTF-8", "TMPDIR": str(workdir)},
        hooks=hooks,
    )


def source_summary(diff: str) -> tuple[int, int, int]:
    """(files changed, lines added, lines removed) of a unified diff."""
    files = added = removed = 0
    for line in diff.split("\n"):
        if line.startswith("+++ "):
            files += 1
        elif line.startswith("--- "):
            continue
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    return files, added, removed


def parse_binary_debdiff(output: str) -> tuple[list[str], list[str], list[str]]:
    """(files added, files removed, control changes) from `debdiff OLD.deb NEW.deb`."""
    added: list[str] = []
    removed: list[str] = []
    control: list[str] = []
    section: list[str] | None = None
    in_note = False
    for line in output.split("\n"):
        if in_note or (line.startswith("[") and section is not control):  # debdiff's notes
            in_note = not line.rstrip().endswith("]")
        elif line.startswith("Files in second"):
            section = added
        elif line.startswith("Files in first"):
            section = removed
        elif line.startswith("Control files"):
            section = control
        elif line.startswith(("File lists identical", "No differences")):
            section = None
        elif not line.strip() or set(line.strip()) == {"-"}:
            continue
        elif section is control:
            control.append(line)  # wdiff's own notation: [-old-] {+new+}
        elif section is not None:
            section.append(line.split()[-1])
    return added, removed, control


def deb_package(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Package"], capture_output=True, text=True, check=True
    ).stdout.strip()


def binary_debdiffs(
    old: list[Path], new: list[Path], *, workdir: Path, log: Path, hooks: Hooks
) -> list[BinaryDebdiff]:
    """Each binary package of either side, the upload's against the suite's of the same name."""
    olds = {deb_package(d): d for d in old}
    news = {deb_package(d): d for d in new}
    found = []
    for package in sorted(olds.keys() | news.keys()):
        if package not in olds:
            found.append(BinaryDebdiff(package=package, status="new"))
            continue
        if package not in news:
            found.append(BinaryDebdiff(package=package, status="dropped"))
            continue
        one = workdir / f"debdiff-{package}.txt"
        outcome = run_debdiff([olds[package]], [news[package]], workdir=workdir, log=one, hooks=hooks)
        text = one.read_text(errors="replace")
        with open(log, "a") as out:
            out.write(f"=== {package}: debdiff {olds[package].name} {news[package].name}\n{text}\n")
        if outcome.returncode not in (0, DIFFERENT):
            raise RuntimeError(f"debdiff of {package} failed (exit {outcome.returncode}): {text[-500:]}")
        added, removed, control = parse_binary_debdiff(text)
        found.append(
            BinaryDebdiff(
                package=package,
                status="changed" if outcome.returncode == DIFFERENT else "unchanged",
                files_added=added[:MAX_LISTED],
                files_removed=removed[:MAX_LISTED],
                control_changes=control[:MAX_LISTED],
            )
        )
    return found


def _identity(tag: LintianTag, version: str) -> tuple[str, str, str]:
    # A tag's note often names the version (e.g. a changelog entry): the same finding in both versions.
    note = tag.note.replace(version, "{version}") if version else tag.note
    return tag.package, tag.tag, note


def tag_diff(
    suite_tags: list[LintianTag], suite_version: str, upload_tags: list[LintianTag], upload_version: str
) -> tuple[list[LintianTag], list[LintianTag]]:
    """(tags new in the upload, tags the upload resolved), compared by package, tag and note."""
    old = {_identity(t, suite_version) for t in suite_tags}
    new = {_identity(t, upload_version) for t in upload_tags}
    added = [t for t in upload_tags if _identity(t, upload_version) not in old]
    resolved = [t for t in suite_tags if _identity(t, suite_version) not in new]
    return added, resolved


def summarize(data: DebdiffData) -> str:
    if data.suite_version is None:
        return f"not in {data.suite}: nothing to compare"
    changed = sum(b.status != "unchanged" for b in data.binaries)
    return (
        f"against {data.suite_version}: {data.files_changed} files "
        f"+{data.lines_added}/-{data.lines_removed}, "
        f"{changed} of {len(data.binaries)} binaries changed, lintian tags {len(data.new_tags)} new "
        f"{len(data.resolved_tags)} resolved"
    )
