"""README.md and docs/ name only what exists: repository paths, links and their anchors, `debflow`
subcommands and `make` targets. Files move; the documents must follow, and this says where they did not."""

from __future__ import annotations

import importlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Named in the documents but not files of this repository: a path inside any Debian source package, and
# the user's own Temporal envconfig file (deploy/ has the example).
NOT_REPOSITORY_PATHS = {"debian/tests/control", "temporal.toml"}
# Made at run time, never committed: the virtualenv and the state directory.
RUNTIME_DIRECTORIES = (".venv/", ".debflow/")
PATH_SUFFIXES = (".py", ".md", ".yaml", ".toml")
# An all-capitals word in a path stands for a value (bench/NAME.py, tests/histories/RECORD_AS--ID.json).
PLACEHOLDER = re.compile(r"(?<![A-Za-z])[A-Z][A-Z0-9_]+(?![a-z])")
COMMAND = re.compile(r"(?:^|[\s`/(])debflow((?: [a-z][a-z-]*)+)")


@dataclass(frozen=True)
class Mention:
    document: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}: {self.text}"


def split(document: Path) -> tuple[list[Mention], list[Mention]]:
    """The document's inline code spans, and the lines of its fenced code blocks."""
    spans: list[Mention] = []
    code: list[Mention] = []
    fenced = False
    for number, line in enumerate(document.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            code.append(Mention(document, number, line))
        else:
            spans += [Mention(document, number, m) for m in re.findall(r"`([^`]+)`", line)]
    return spans, code


def links(document: Path) -> list[Mention]:
    found = []
    for number, line in enumerate(document.read_text().splitlines(), start=1):
        found += [Mention(document, number, m) for m in re.findall(r"\]\(([^)\s]+)\)", line)]
    return found


def is_repository_path(text: str) -> bool:
    if " " in text or "://" in text or text.startswith(("/", "<", "$", "~", "-")):
        return False
    if not ("/" in text or text.endswith(PATH_SUFFIXES)):
        return False
    return not (
        text in NOT_REPOSITORY_PATHS
        or text.startswith(RUNTIME_DIRECTORIES)
        or PLACEHOLDER.search(text.replace("README.md", ""))
        or any(c in text for c in "<>$…|=:;'\"")
    )


def exists(path: str, base: Path = ROOT) -> bool:
    """The path, a directory when it ends in `/`, or at least one match of its glob (`*`, `{a,b}`)."""
    if path.startswith("../shared/"):
        # The shared data lives beside the project root on machines that have it; elsewhere skip it.
        if not (ROOT.parent / "shared").is_dir():
            return True
        base = ROOT
    alternatives = [path]
    if (m := re.search(r"\{([^}]*)\}", path)) is not None:
        alternatives = [path[: m.start()] + choice + path[m.end() :] for choice in m.group(1).split(",")]
    for candidate in alternatives:
        if "*" in candidate:
            if not any(base.glob(candidate)):
                return False
        elif not (base / candidate).exists() or (candidate.endswith("/") and not (base / candidate).is_dir()):
            return False
    return True


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces become hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    _, code = split(document)
    in_code = {m.line for m in code}
    return {
        slug(line.lstrip("#"))
        for number, line in enumerate(document.read_text().splitlines(), start=1)
        if line.startswith("#") and number not in in_code
    }


def path_candidates(document: Path) -> list[Mention]:
    """Code spans, and the words of commands in spans and code blocks (comments left out)."""
    spans, code = split(document)
    found = []
    for m, is_code in [(m, False) for m in spans] + [(m, True) for m in code]:
        text = re.sub(r"(^|\s)#.*", "", m.text) if is_code else m.text
        words = text.split() if is_code or " " in text else [text]
        for word in words:
            word = word.partition("=")[2] if re.match(r"^[A-Z_]+=", word) else word
            found.append(Mention(m.document, m.line, word.strip("()[],;").rstrip(":")))
    return found


def test_every_repository_path_named_exists() -> None:
    missing = [
        str(m)
        for document in DOCUMENTS
        for m in path_candidates(document)
        if is_repository_path(m.text) and not exists(m.text)
    ]
    assert not missing, "paths named in the documents that do not exist:\n" + "\n".join(missing)


def test_every_link_leads_somewhere() -> None:
    broken = []
    for document in DOCUMENTS:
        for m in links(document):
            if "://" in m.text or m.text.startswith("mailto:"):
                continue
            target, _, anchor = m.text.partition("#")
            path = (document.parent / target).resolve() if target else document
            if not path.exists():
                broken.append(f"{m} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{m} (no heading #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def cli() -> object:
    """The `debflow` console script's command tree, found through pyproject.toml's entry point; a group
    has `commands`, by name."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module = importlib.import_module(scripts["debflow"].partition(":")[0])
    apps = [value for value in vars(module).values() if isinstance(value, typer.Typer)]
    assert len(apps) == 1, f"expected one typer app in {module.__name__}, found {len(apps)}"
    return typer.main.get_command(apps[0])


def test_every_debflow_command_named_exists() -> None:
    root = cli()
    mentions = [m for document in DOCUMENTS for part in split(document) for m in part]
    unknown, named = [], 0
    for m in mentions:
        for words in COMMAND.findall(m.text):
            command: object | None = root
            path = ["debflow"]
            for word in words.split():
                subcommands = getattr(command, "commands", None)
                if subcommands is None:
                    break  # an argument of the command, not a subcommand
                command = subcommands.get(word)
                path.append(word)
                if command is None:
                    unknown.append(f"{m} (no `{' '.join(path)}`)")
                    break
            named += 1
    assert named > 10, "the documents should name the commands they describe"
    assert not unknown, "commands named in the documents that the CLI does not have:\n" + "\n".join(unknown)


def test_every_make_target_named_exists() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = {
        (str(m), target)
        for document in DOCUMENTS
        for part in split(document)
        for m in part
        for target in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", m.text)
    }
    assert {"demo", "test", "lint"} <= {t for _, t in named}
    assert not [f"{m} (make {t})" for m, t in named if t not in targets]


def test_readme_sets_up_with_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## The two commands\n\n```sh\n(.*?)```", readme, flags=re.S)
    assert block is not None, 'README.md has no "The two commands" block'
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize(
    ("text", "is_path"),
    [
        ("workflows/queues.py", True),
        ("pyproject.toml", True),
        ("tests/histories/upload-pipeline-v2-*", True),
        ("bench/NAME.py", False),
        ("debian:source-package", False),
        ("http://deb.debian.org/debian", False),
        ("/usr/share/keyrings/debian-archive-keyring.gpg", False),
        ("$STATE_DIR/dev-stack.json", False),
        (".debflow/temporal.db", False),
        ("build[:ARCH]", False),
    ],
)
def test_what_counts_as_a_repository_path(text: str, is_path: bool) -> None:
    assert is_repository_path(text) is is_path


def test_a_missing_path_is_found_missing() -> None:
    assert exists("tests/histories/upload-pipeline-v2-*")
    assert exists("tests/histories/upload-pipeline-{v2,v3}-*")
    assert not exists("tests/histories/upload-pipeline-v99-*")
    assert not exists("tests/no_such_module.py")
    assert not exists("README.md/")
