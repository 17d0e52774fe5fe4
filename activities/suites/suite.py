"""Debian suites as `debian:suite` collections: import of archive indices, state, reverse dependencies."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.debian_support import Version
from sqlalchemy import Text, any_, bindparam, func, literal, or_, select, text, union
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session, sessionmaker

from activities.suites.release_signature import DEBIAN_ARCHIVE_KEYRING, check_valid_until, release_text
from activities.suites.suite_indices import (
    SuiteImportError,
    SuiteIndices,
    read_indices,
    read_uncompressed,
    verify_release,
)
from models.architectures import builds_on
from models.suite import BINARY_ITEM, SOURCE_ITEM, SUITE_CATEGORY, RelationKind, SuiteRelation
from models.tables import Collection, CollectionItem

# Namespace of the transaction-level advisory lock that serialises imports of one suite.
IMPORT_LOCK_CLASS = 0x53756974
# Below this many changed items the planner's statistics stay good enough without an ANALYZE.
ANALYZE_THRESHOLD = 1000


@dataclass(frozen=True)
class TestTarget:
    """A source package whose autopkgtests a campaign runs: its suite version and Testsuite values."""

    __test__ = False  # not a pytest class, despite the name

    source: str
    version: str
    testsuite: tuple[str, ...]


@dataclass(frozen=True)
class ImportStats:
    """What an import did: items inserted, soft-removed and left alone, its duration, the new state."""

    inserted: int
    removed: int
    unchanged: int
    seconds: float
    state: str
    signed_by: str = ""  # key id and user id of the Release's good signature; empty: not verified


def import_suite(
    *,
    sessions: sessionmaker[Session],
    name: str,
    sources: Path,
    packages: Sequence[Path],
    release: Path | None = None,
    keyring: Path | None = None,
    insecure_unsigned_release: bool = False,
    mirror: str | None = None,
) -> ImportStats:
    """Bring suite `name` to the content of the indices, writing only the items that changed.

    The indices must match `release` (InRelease, or Release + Release.gpg), whose signature must be good by
    a key of `keyring` (default: the one kept from the suite's last import that named one, else Debian's
    archive keyring); `insecure_unsigned_release` skips the signature, and without `release` all checks.
    Everything is checked before any write. `mirror` (where real campaign runs fetch the suite's files)
    is kept from the last import that named one."""
    started = time.monotonic()
    signed_by = ""
    content: bytes | None = None
    if release is None and not insecure_unsigned_release:
        raise SuiteImportError(
            "no Release to verify the indices against: give the suite's InRelease (or Release with its "
            "Release.gpg) with --release"
        )
    if release is not None:
        # Checked before anything is written: a bad signature or checksum leaves the database alone.
        if insecure_unsigned_release:
            content = read_uncompressed(release)
        else:
            verified = release_text(
                release, keyring or suite_keyring(sessions, name) or DEBIAN_ARCHIVE_KEYRING
            )
            content, signed_by = verified.content, verified.signed_by
        check_valid_until(content, release)
    indices = read_indices(sources, packages)
    if release is not None:
        verify_release(release, indices.files, content)
    rows = item_rows(indices)
    state = rows_state(rows)
    with sessions.begin() as session:
        collection_id = _suite_for_import(session, name)
        removed = _remove_vanished(session, collection_id, rows)
        inserted = _insert_new(session, collection_id, indices)
        fields = {"state": state} | ({"mirror": mirror} if mirror else {})
        if keyring is not None:
            fields["keyring"] = str(keyring.resolve())
        session.execute(
            text(
                "UPDATE collection SET data = data || CAST(:fields AS jsonb)"
                " WHERE id = :id AND NOT data @> CAST(:fields AS jsonb)"
            ),
            {"id": collection_id, "fields": json.dumps(fields)},
        )
        if inserted + removed >= ANALYZE_THRESHOLD:
            session.execute(text("ANALYZE collection_item, suite_relation"))
    return ImportStats(inserted, removed, len(rows) - inserted, time.monotonic() - started, state, signed_by)


def item_rows(indices: SuiteIndices) -> list[tuple[str, str, str]]:
    """(category, name, canonical JSON) of every item, sorted by name: what is stored and fingerprinted."""
    return [
        (item.category, name, json.dumps(item.data, sort_keys=True, separators=(",", ":")))
        for name, item in sorted(indices.items.items())
    ]


def rows_state(rows: Sequence[tuple[str, str, str]]) -> str:
    """The suite state: SHA-256 over the items, equal for equal content whatever the files' order or form."""
    digest = hashlib.sha256()
    for category, name, data in rows:
        digest.update(f"{category}\0{name}\0{data}\n".encode())
    return digest.hexdigest()


def _suite_for_import(session: Session, name: str) -> int:
    where = (Collection.category == SUITE_CATEGORY, Collection.name == name)
    collection_id = session.scalar(select(Collection.id).where(*where))
    if collection_id is None:
        collection_id = session.scalar(
            insert(Collection)
            .values(name=name, category=SUITE_CATEGORY, data={})
            .on_conflict_do_nothing()
            .returning(Collection.id)
        ) or session.scalar(select(Collection.id).where(*where))
    assert collection_id is not None
    # An advisory lock, not SELECT … FOR UPDATE: a row lock would rewrite the collection row's header.
    session.execute(select(func.pg_advisory_xact_lock(IMPORT_LOCK_CLASS, collection_id % 2**31)))
    return collection_id


def _copy(session: Session, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY rows in through the session's own connection, inside its transaction."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _remove_vanished(session: Session, collection_id: int, rows: Sequence[tuple[str, str, str]]) -> int:
    """Soft-remove the active items whose name or content is not in the new indices; drop their relations."""
    session.execute(
        text(
            "CREATE TEMPORARY TABLE suite_import (category text NOT NULL, name text NOT NULL,"
            " data jsonb NOT NULL) ON COMMIT DROP"
        )
    )
    _copy(session, "COPY suite_import (category, name, data) FROM STDIN", rows)
    # Temporary tables are never analysed automatically; without statistics the anti-joins go astray.
    session.execute(text("ANALYZE suite_import"))
    removed = session.execute(
        text(
            """
            WITH removed AS (
                UPDATE collection_item i SET removed_at = now()
                WHERE i.collection_id = :id AND i.removed_at IS NULL AND i.category IN (:source, :binary)
                  AND NOT EXISTS (
                      SELECT 1 FROM suite_import n
                      WHERE n.name = i.name AND n.category = i.category AND n.data = i.data)
                RETURNING i.id),
            dropped AS (DELETE FROM suite_relation r USING removed WHERE r.item_id = removed.id)
            SELECT count(*) FROM removed
            """
        ),
        {"id": collection_id, "source": SOURCE_ITEM, "binary": BINARY_ITEM},
    ).scalar_one()
    return int(removed)


def _insert_new(session: Session, collection_id: int, indices: SuiteIndices) -> int:
    """Insert the items no active item has the name of (new or changed), then their relation rows."""
    created = session.execute(
        text(
            """
            INSERT INTO collection_item (collection_id, name, category, data)
            SELECT :id, n.name, n.category, n.data FROM suite_import n
            WHERE NOT EXISTS (
                SELECT 1 FROM collection_item i
                WHERE i.collection_id = :id AND i.removed_at IS NULL AND i.name = n.name)
            RETURNING id, name
            """
        ),
        {"id": collection_id},
    ).all()
    # The foreign-key checks of the relation rows run one query per row with a plan this connection may
    # have cached while collection_item was small (a generic plan, made after a few earlier checks): a
    # sequential scan, per row, of the items just inserted. Measured: 50,000 rows in 40 s instead of 0.3 s,
    # and a bookworm import (700,000 relations) on a pooled connection that had imported a small suite ran
    # for more than 13 minutes. Planned again now, the checks see the table's real size.
    session.execute(text("DISCARD PLANS"))
    relations = [
        (item_id, kind, target, collection_id, package, source, architecture, restriction)
        for item_id, name in created
        for kind, target, package, source, architecture, restriction in indices.items[name].relations
    ]
    _copy(
        session,
        "COPY suite_relation (item_id, kind, target, collection_id, package, source, architecture,"
        " restriction) FROM STDIN",
        relations,
    )
    return len(created)


def _suite_id(session: Session, suite: str) -> int:
    collection_id = session.scalar(
        select(Collection.id).where(Collection.category == SUITE_CATEGORY, Collection.name == suite)
    )
    if collection_id is None:
        raise LookupError(f"unknown suite {suite!r}: import it first with `debflow import-suite {suite} …`")
    return collection_id


def suite_state(*, session: Session, suite: str) -> str:
    """The fingerprint of the suite's current content; it changes whenever an import changes an item."""
    data = session.scalar(
        select(Collection.data).where(Collection.category == SUITE_CATEGORY, Collection.name == suite)
    )
    if data is None:
        raise LookupError(f"unknown suite {suite!r}: import it first with `debflow import-suite {suite} …`")
    return str(data.get("state", ""))


def suite_mirror(sessions: sessionmaker[Session], suite: str) -> str | None:
    """The mirror a suite was imported with (None: unknown suite or none recorded)."""
    with sessions() as session:
        data = session.scalar(
            select(Collection.data).where(Collection.category == SUITE_CATEGORY, Collection.name == suite)
        )
    return str(data["mirror"]) if data and data.get("mirror") else None


def suite_keyring(sessions: sessionmaker[Session], suite: str) -> Path | None:
    """The keyring a suite's Release was last verified with, when an import named one."""
    with sessions() as session:
        data = session.scalar(
            select(Collection.data).where(Collection.category == SUITE_CATEGORY, Collection.name == suite)
        )
    return Path(data["keyring"]) if data and data.get("keyring") else None


def source_binaries(*, session: Session, suite: str, source: str) -> tuple[str, list[str]]:
    """The suite's version of `source` and the binary names its Binary field lists."""
    collection_id = _suite_id(session, suite)
    builds = select(SuiteRelation.item_id).where(
        SuiteRelation.collection_id == collection_id,
        SuiteRelation.kind == RelationKind.BINARY,
        SuiteRelation.package == source,
    )
    versions = session.scalars(select(CollectionItem.data).where(CollectionItem.id.in_(builds))).all()
    if not versions:
        raise LookupError(f"source package {source!r} is not in suite {suite!r}")
    newest = max(versions, key=lambda data: Version(data["version"]))
    return str(newest["version"]), list(newest["binaries"])


def reverse_dependency_targets(
    *,
    session: Session,
    suite: str,
    binaries: Sequence[str],
    architecture: str = "amd64",
    include_source: str | None = None,
) -> list[TestTarget]:
    """The sources with autopkgtests that depend on, or are test-triggered by, `binaries` (docs/suites.md)."""
    collection_id = _suite_id(session, suite)
    relation = SuiteRelation
    in_suite = relation.collection_id == collection_id
    architectures = (architecture, "all")
    # One array parameter, not one parameter per binary: the statement's text stays the same for any upload.
    uploaded = bindparam("binaries", list(binaries), type_=ARRAY(Text))
    provided = select(relation.target).where(
        in_suite,
        relation.kind == RelationKind.PROVIDES,
        relation.package == any_(uploaded),
        relation.architecture.in_(architectures),
    )
    depended_on = union(select(func.unnest(uploaded)), provided)
    depending = select(relation.source).where(
        in_suite,
        relation.kind.in_((RelationKind.DEPENDS, RelationKind.PRE_DEPENDS)),
        relation.architecture.in_(architectures),
        relation.target.in_(depended_on),
    )
    triggered = select(relation.source).where(
        in_suite, relation.kind == RelationKind.TESTSUITE_TRIGGERS, relation.target == any_(uploaded)
    )
    candidates = [depending, triggered]
    if include_source is not None:
        candidates.append(select(literal(include_source)))
    tested = select(relation.item_id).where(
        in_suite,
        relation.kind == RelationKind.TESTSUITE,
        relation.package.in_(union(*candidates)),
        or_(relation.target == "autopkgtest", relation.target.startswith("autopkgtest-pkg-")),
    )
    found = session.scalars(select(CollectionItem.data).where(CollectionItem.id.in_(tested))).all()
    newest: dict[str, dict[str, Any]] = {}
    for data in found:
        # A suite may carry two versions of a source (e.g. firefox-esr); the archive tests the newest.
        current = newest.get(data["name"])
        if current is None or Version(data["version"]) > Version(current["version"]):
            newest[data["name"]] = data
    return [
        TestTarget(name, data["version"], tuple(data["testsuite"]))
        for name, data in sorted(newest.items())
        if builds_on(data["architecture"], architecture)
    ]
