"""What a prepared testbed is made from and what a run asks of it: the imported suite's state and index,
and what a source's tests need (debian/tests/control)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822, Dsc
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from models.suite import BINARY_ITEM, SUITE_CATEGORY

_SUITE = text("SELECT data FROM collection WHERE category = :category AND name = :suite")
_BINARIES = text(
    "SELECT i.data FROM collection_item i JOIN collection c ON c.id = i.collection_id "
    "WHERE c.category = :category AND c.name = :suite AND i.removed_at IS NULL AND i.category = :binary "
    "AND (i.data ->> 'architecture') IN (:architecture, 'all') ORDER BY i.name"
)
_FIELDS = (
    ("Depends", "depends"),
    ("Pre-Depends", "pre_depends"),
    ("Provides", "provides"),
    ("Filename", "filename"),
    ("Size", "size"),
    ("SHA256", "sha256"),
)


@dataclass(frozen=True)
class SuiteIndex:
    """An imported suite as a testbed sees it: its state, mirror and binary index for one architecture."""

    suite: str
    state: str
    mirror: str
    architecture: str
    sessions: sessionmaker[Session]

    def packages(self) -> bytes:
        """The suite's Packages for the architecture (and `all`), written from its collection items
        (verified when imported). Read only to prepare an environment: a full suite is 60,000 rows."""
        with self.sessions() as session:
            rows = session.scalars(
                _BINARIES,
                {
                    "category": SUITE_CATEGORY,
                    "suite": self.suite,
                    "binary": BINARY_ITEM,
                    "architecture": self.architecture,
                },
            ).all()
        paragraphs = []
        for item in rows:
            source = item["source"]
            if item["source_version"] != item["version"]:
                source = f"{source} ({item['source_version']})"
            lines = [f"Package: {item['name']}", f"Version: {item['version']}"]
            lines += [f"Architecture: {item['architecture']}", f"Source: {source}"]
            lines += [f"{field}: {item[key]}" for field, key in _FIELDS if item.get(key) not in (None, "")]
            paragraphs.append("\n".join(lines) + "\n")
        return "\n".join(paragraphs).encode()


def suite_index(sessions: sessionmaker[Session], suite: str, architecture: str) -> SuiteIndex | None:
    """The suite's state and mirror; None when the suite was never imported with a mirror."""
    with sessions() as session:
        data = session.scalar(_SUITE, {"category": SUITE_CATEGORY, "suite": suite})
    if not data or not data.get("state") or not data.get("mirror"):
        return None
    return SuiteIndex(suite, str(data["state"]), str(data["mirror"]), architecture, sessions)


def read_tests_control(dsc: Path) -> list[Deb822]:
    """The stanzas of the source's debian/tests/control, read from its tarballs (none: [])."""
    with open(dsc) as f:
        names = [entry["name"] for entry in Dsc(f).get("Files", [])]
    # The Debian tarball of a 3.0 (quilt) source carries debian/; a native source's only tarball does.
    names.sort(key=lambda name: ".debian.tar." not in name)
    for name in names:
        if ".tar." not in name or not (dsc.parent / name).exists():
            continue
        with tarfile.open(dsc.parent / name) as archive:
            for member in archive:
                parts = member.name.split("/")
                if member.isfile() and parts[-3:] == ["debian", "tests", "control"] and len(parts) <= 4:
                    extracted = archive.extractfile(member)
                    content = extracted.read().decode(errors="replace") if extracted else ""
                    return list(Deb822.iter_paragraphs(content.splitlines()))
    return []


def what_tests_need(dsc: Path) -> tuple[str, bool]:
    """What the tests depend on beyond the binaries under test (`@` is them), and whether any test
    declares `needs-internet`."""
    stanzas = read_tests_control(dsc)
    relations: list[str] = []
    internet = False
    for stanza in stanzas:
        internet = internet or "needs-internet" in stanza.get("Restrictions", "").replace(",", " ").split()
        for relation in stanza.get("Depends", "@").split(","):
            relation = " ".join(relation.split())
            if relation == "@builddeps@":
                with open(dsc) as f:
                    source = Dsc(f)
                relations += [source.get("Build-Depends", ""), "build-essential"]
            elif relation and not relation.startswith("@"):
                relations.append(relation)
    return ", ".join(r for r in relations if r), internet
