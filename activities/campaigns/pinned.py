"""Pinned packages of a run (debci's pin-packages): every binary of a `src:NAME`, or the binary `NAME`,
taken from another imported suite, found in that suite's index and fetched from that suite's mirror.

All look-ups go through indexed columns: source items and binary names by the suite's `binary`
relations (a source item's Binary field), binary items by their source (ix_collection_item_binary_source).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from debian.debian_support import Version
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import Text

from activities.campaigns.archive_files import PoolFile, binary_file, newest_build, pool_files
from activities.suites.suite import TestTarget
from models.architectures import builds_on
from models.campaign import Pin
from models.suite import BINARY_ITEM, SOURCE_ITEM, SUITE_CATEGORY, RelationKind

_SUITE = text("SELECT id, data FROM collection WHERE category = :category AND name = :suite")
# Source items of the named sources: those whose Binary field gives them a `binary` relation.
_SOURCES = text(
    "SELECT i.data FROM collection_item i WHERE i.collection_id = :cid AND i.removed_at IS NULL "
    "AND i.category = :source_item AND i.id IN (SELECT r.item_id FROM suite_relation r "
    "WHERE r.collection_id = :cid AND r.kind = :binary_kind AND r.package = ANY(:sources))"
).bindparams(bindparam("sources", type_=ARRAY(Text)))
# The sources that build the named binaries.
_BUILT_BY = text(
    "SELECT DISTINCT r.target, r.package FROM suite_relation r WHERE r.collection_id = :cid "
    "AND r.kind = :binary_kind AND r.target = ANY(:binaries)"
).bindparams(bindparam("binaries", type_=ARRAY(Text)))
_BINARIES = text(
    "SELECT i.data FROM collection_item i WHERE i.collection_id = :cid AND i.removed_at IS NULL "
    "AND i.category = :binary_item AND (i.data ->> 'source') = ANY(:sources) "
    "AND (i.data ->> 'architecture') IN (:architecture, 'all')"
).bindparams(bindparam("sources", type_=ARRAY(Text)))


class BadPin(LookupError):
    """A pin naming a suite that is not imported, or a package its suite lacks: the run cannot be what
    was asked for, whatever the retries (a non-retryable `BadPin` error)."""


@dataclass(frozen=True)
class PinnedSource:
    """A pinned source's version in its pin suite and its files there (the tests of a pinned target)."""

    version: str
    files: tuple[PoolFile, ...]


@dataclass(frozen=True)
class PinnedFiles:
    """What one pin brings into a run: its suite's mirror, the binaries to install, and its sources."""

    suite: str
    mirror: str
    binaries: tuple[PoolFile, ...]
    sources: dict[str, PinnedSource] = field(default_factory=dict)


def pinned_files(session: Session, pin: Pin, architecture: str) -> PinnedFiles:
    """The newest build for `architecture` (and `all`) of every binary the pin names, from its suite."""
    found = session.execute(_SUITE, {"category": SUITE_CATEGORY, "suite": pin.suite}).first()
    if found is None:
        raise BadPin(f"pin-packages suite {pin.suite!r} is not imported (`debflow import-suite`)")
    cid, data = found
    mirror = (data or {}).get("mirror")
    if not mirror:
        raise BadPin(f"pin-packages suite {pin.suite!r} has no mirror: import it with `--mirror URL`")
    wanted_sources, wanted_binaries = sorted(set(pin.sources)), sorted(set(pin.binaries))
    common = {"cid": cid, "binary_kind": str(RelationKind.BINARY)}
    sources = newest_sources(session, cid, wanted_sources)
    built_by: dict[str, str] = {
        str(target): str(source)
        for target, source in session.execute(_BUILT_BY, {**common, "binaries": wanted_binaries})
    }
    _lacking(pin, [s for s in wanted_sources if s not in sources], "source", architecture)
    _lacking(pin, [b for b in wanted_binaries if b not in built_by], "binary", architecture)
    unfiled = [name for name, item in sources.items() if not item.get("files")]
    if unfiled:
        raise LookupError(
            f"suite {pin.suite} lists no files of {', '.join(unfiled)} (import it again with this debflow)"
        )
    rows = session.scalars(
        _BINARIES,
        {
            "cid": cid,
            "binary_item": BINARY_ITEM,
            "sources": sorted(set(wanted_sources) | set(built_by.values())),
            "architecture": architecture,
        },
    ).all()
    chosen: list[dict[str, Any]] = []
    for name in wanted_sources:
        # The suite's source version; binaries lagging behind it (not yet built) are the newest built.
        chosen += newest_build(rows, name, sources[name]["version"]) or newest_build(rows, name, None)
    named = [b for b in rows if b["name"] in wanted_binaries]
    for name in wanted_binaries:
        builds = [b for b in named if b["name"] == name]
        if not builds:
            _lacking(pin, [name], "binary", architecture)
        chosen.append(max(builds, key=lambda b: Version(b["version"])))
    unique = {(b["name"], b["architecture"]): b for b in chosen}
    return PinnedFiles(
        suite=pin.suite,
        mirror=str(mirror),
        binaries=tuple(binary_file(b) for _, b in sorted(unique.items())),
        sources={n: PinnedSource(str(item["version"]), pool_files(item)) for n, item in sources.items()},
    )


def _lacking(pin: Pin, names: Sequence[str], what: str, architecture: str) -> None:
    if names:
        listed = ", ".join(names)
        where = "" if what == "source" else f" for {architecture}"
        raise BadPin(f"pin-packages: suite {pin.suite!r} has no {what} package {listed}{where}")


def deb_package(file_name: str) -> str:
    """The package a .deb file is of (name_version_architecture.deb)."""
    return file_name.split("_", 1)[0]


def newest_sources(session: Session, cid: int, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Name → data of the newest source item of each name the suite holds."""
    newest: dict[str, dict[str, Any]] = {}
    rows = session.scalars(
        _SOURCES,
        {
            "cid": cid,
            "binary_kind": str(RelationKind.BINARY),
            "source_item": SOURCE_ITEM,
            "sources": list(names),
        },
    ).all()
    for item in rows:
        current = newest.get(item["name"])
        if current is None or Version(item["version"]) > Version(current["version"]):
            newest[item["name"]] = item
    return newest


def given_targets(session: Session, suite: str, names: Sequence[str], architecture: str) -> list[TestTarget]:
    """A campaign's given targets (britney2 names what to test) at their versions in the suite; those that
    build nothing on `architecture` are left out, as the reverse-dependency plan leaves them out."""
    found = session.execute(_SUITE, {"category": SUITE_CATEGORY, "suite": suite}).first()
    if found is None:
        raise LookupError(f"unknown suite {suite!r}: import it first with `debflow import-suite {suite} …`")
    sources = newest_sources(session, found[0], sorted(set(names)))
    missing = sorted(set(names) - set(sources))
    if missing:
        raise LookupError(f"suite {suite!r} has no source package {', '.join(missing)}")
    return [
        TestTarget(name, str(data["version"]), tuple(data["testsuite"]))
        for name, data in sorted(sources.items())
        if builds_on(data["architecture"], architecture)
    ]


def check_pins(
    sessions: sessionmaker[Session], pins: Sequence[Pin], architectures: Sequence[str]
) -> tuple[str, str]:
    """Check that every pin's suite is imported and has every named package (BadPin if not), before a
    campaign starts; the first pinned package and its version: the trigger of a campaign without upload."""
    with sessions() as session:
        found = [pinned_files(session, pin, arch) for pin in pins for arch in architectures]
    first = pins[0]
    if first.sources:
        name = first.sources[0]
        return name, found[0].sources[name].version
    name = first.binaries[0]
    deb = next(f for f in found[0].binaries if deb_package(f.name) == name)
    return name, deb.name.split("_")[1]
