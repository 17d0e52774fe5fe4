"""The suite's current version of an upload's source: its files from the suite's mirror, each checked
against the imported index's SHA-256 and size (activities/campaigns/archive_files.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from activities.campaigns.archive_files import PoolCache, PoolFile, binary_file, newest_build, pool_files
from models.suite import BINARY_ITEM, SOURCE_ITEM, SUITE_CATEGORY

# The source items of one name (item names are NAME_VERSION) and the binary items built from it for
# one architecture and `all` (along ix_collection_item_binary_source).
_VERSIONS = text(
    "SELECT i.category, i.data FROM collection_item i JOIN collection c ON c.id = i.collection_id "
    "WHERE c.category = :suite_category AND c.name = :suite AND i.removed_at IS NULL "
    "AND i.category = :source_item AND i.name LIKE :prefix ESCAPE '\\' "
    "UNION ALL "
    "SELECT i.category, i.data FROM collection_item i JOIN collection c ON c.id = i.collection_id "
    "WHERE c.category = :suite_category AND c.name = :suite AND i.removed_at IS NULL "
    "AND i.category = :binary_item AND (i.data ->> 'source') = :source "
    "AND (i.data ->> 'architecture') IN (:architecture, 'all')"
)
_MIRROR = text("SELECT data ->> 'mirror' FROM collection WHERE category = :category AND name = :suite")


@dataclass(frozen=True)
class SuiteVersion:
    """What the suite has of a source: its newest version, the source's files and its binaries."""

    suite: str
    source: str
    version: str
    mirror: str
    source_files: tuple[PoolFile, ...]  # the .dsc first
    binaries: tuple[PoolFile, ...]


def suite_version(
    sessions: sessionmaker[Session], *, suite: str, source: str, architecture: str
) -> SuiteVersion | None:
    """The suite's newest version of `source` (None: the suite has none); LookupError when the suite is
    unknown or was imported without a mirror or file lists."""
    with sessions() as session:
        mirror = session.scalar(_MIRROR, {"category": SUITE_CATEGORY, "suite": suite})
        rows = session.execute(
            _VERSIONS,
            {
                "suite_category": SUITE_CATEGORY,
                "suite": suite,
                "source_item": SOURCE_ITEM,
                "binary_item": BINARY_ITEM,
                "source": source,
                "prefix": source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "\\_%",
                "architecture": architecture,
            },
        ).all()
    sources = [data for category, data in rows if category == SOURCE_ITEM and data["name"] == source]
    if not sources:
        return None
    newest = max(sources, key=lambda data: Version(data["version"]))
    if not mirror:
        raise LookupError(f"suite {suite} has no mirror: import it with `--mirror URL`")
    if not newest.get("files"):
        raise LookupError(
            f"{source} {newest['version']} is in suite {suite} without its files "
            "(import the suite again with this debflow version)"
        )
    built = newest_build(
        [data for category, data in rows if category == BINARY_ITEM], source, newest["version"]
    )
    return SuiteVersion(
        suite=suite,
        source=source,
        version=str(newest["version"]),
        mirror=str(mirror),
        source_files=pool_files(newest),
        binaries=tuple(binary_file(b) for b in built),
    )


def fetch(cache: PoolCache, found: SuiteVersion, into: Path) -> tuple[Path, list[Path]]:
    """The suite version's .dsc (its files beside it) and .debs in `into`, checked by checksum."""
    into.mkdir(parents=True, exist_ok=True)
    paths = [cache.fetch(found.mirror, f, into) for f in found.source_files]
    debs = [cache.fetch(found.mirror, f, into) for f in found.binaries]
    return paths[0], debs
