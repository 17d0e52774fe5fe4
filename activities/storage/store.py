"""The content-addressed artifact store: blobs on disk by SHA-256, their records in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from activities.metrics import NO_METRICS, Metrics
from models.artifacts import ArtifactData, validate_artifact_data
from models.tables import Artifact, ArtifactRelation, File, FileInArtifact, RelationType

CHUNK = 1 << 20
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"
T = TypeVar("T")


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    created: bool  # False when the store already had this content


@dataclass(frozen=True)
class Relation:
    """An edge from artifact `source` (index in the batch) to `target` (an id, or an index in the
    batch when `target_in_batch`)."""

    source: int
    target: int
    type: RelationType
    target_in_batch: bool = False


@dataclass(frozen=True)
class NewArtifact:
    """Everything needed to register one artifact; `files` maps path in artifact → local file."""

    category: str
    data: ArtifactData | dict[str, Any]
    files: Mapping[str, Path]
    idempotency_key: str | None = None


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact as an activity finds it again: what an earlier attempt of it registered."""

    id: int
    category: str
    data: dict[str, Any]
    idempotency_key: str | None


class ExpiredReference(LookupError):
    """A row this write references is gone (expired, or never existed), even after one re-resolve."""


class _Raced(Exception):
    """A row this write needs was removed by a concurrent expiry; the write is tried once more."""


def _is_foreign_key_violation(error: IntegrityError) -> bool:
    return getattr(error.orig, "sqlstate", None) == FOREIGN_KEY_VIOLATION


def _missing_reference(error: IntegrityError) -> str:
    diag = getattr(error.orig, "diag", None)
    detail = getattr(diag, "message_detail", None) or str(error.orig)
    return f"{detail} It expired, or never existed; look it up again."


def write_resolving_once(sessions: sessionmaker[Session], write: Callable[[Session], T]) -> T:
    """Run `write` in one transaction; if expiry removed a row it references (foreign-key violation
    23503), run it once more, then fail with `ExpiredReference` and a message naming the row."""
    for attempt in (1, 2):
        try:
            with sessions.begin() as session:
                return write(session)
        except IntegrityError as e:
            if not _is_foreign_key_violation(e):
                raise
            if attempt == 2:
                raise ExpiredReference(_missing_reference(e)) from e
        except _Raced as e:
            if attempt == 2:
                raise ExpiredReference(str(e)) from e
    raise AssertionError("unreachable")


class ArtifactStore:
    """Blobs under `root/ab/cd/<sha256>`; artifacts and files registered in one short transaction."""

    def __init__(self, root: Path, sessions: sessionmaker[Session], *, metrics: Metrics = NO_METRICS) -> None:
        self.root = root
        self.sessions = sessions
        self.metrics = metrics
        self.root.mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_blob(self, source: Path) -> StoredBlob:
        """Copy `source` into the store, hashing it on the way; atomic through a rename."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            sha256 = digest.hexdigest()
            target = self.blob_path(sha256)
            try:
                # A fresh mtime tells the orphan-blob collector this content is wanted again; if the
                # collector took the blob away meanwhile, utime fails and the blob is written anew.
                os.utime(target)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, target)
                return StoredBlob(sha256, size, created=True)
            os.unlink(tmp_name)
            return StoredBlob(sha256, size, created=False)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def register(
        self,
        artifacts: list[NewArtifact],
        *,
        workflow_id: str | None = None,
        activity_id: str | None = None,
        expires_at: dt.datetime | None = None,
        relations: Iterable[Relation] = (),
        also: Callable[[Session, bool], None] | None = None,
    ) -> list[int]:
        """Store the files and register `artifacts` (all or none); return their ids in order.

        `also(session, fresh)` runs in the same transaction (`fresh`: some artifact was new), so other
        rows — a task's history — are committed with the artifacts or not at all.

        An artifact whose idempotency key is already registered is returned as it is, not stored
        twice (its expiry moves to `expires_at` if that is later); two writers racing on one key both
        get the row the first one committed. A referenced row that expiry removed meanwhile raises
        `ExpiredReference`.
        """
        validated = [validate_artifact_data(a.category, a.data) for a in artifacts]
        new_blobs: list[str] = []
        try:
            blobs: list[dict[str, StoredBlob]] = []
            for artifact in artifacts:
                stored = {path: self.put_blob(local) for path, local in artifact.files.items()}
                new_blobs += [b.sha256 for b in stored.values() if b.created]
                blobs.append(stored)
            relations = list(relations)

            def write(session: Session) -> list[int]:
                ids, fresh = self._insert(
                    session, artifacts, validated, blobs, workflow_id, activity_id, expires_at
                )
                self._relate(session, ids, relations)
                if also is not None:
                    also(session, fresh)
                return ids

            ids = write_resolving_once(self.sessions, write)
        except BaseException:
            self.discard_unreferenced(new_blobs)
            raise
        new_bytes = sum(b.size for stored in blobs for b in stored.values() if b.created)
        self.metrics.artifacts_stored([a.category for a in artifacts], new_bytes)
        return ids

    def _insert(
        self,
        session: Session,
        artifacts: list[NewArtifact],
        validated: list[dict[str, Any]],
        blobs: list[dict[str, StoredBlob]],
        workflow_id: str | None,
        activity_id: str | None,
        expires_at: dt.datetime | None,
    ) -> tuple[list[int], bool]:
        file_ids = self._file_ids(session, [b for stored in blobs for b in stored.values()])
        keys = [a.idempotency_key for a in artifacts if a.idempotency_key]
        existing: dict[str, int] = {}
        if keys:
            # KEY SHARE: expiry cannot delete what we are about to return until we commit.
            rows = session.execute(
                select(Artifact.idempotency_key, Artifact.id)
                .where(Artifact.idempotency_key.in_(keys))
                .with_for_update(key_share=True)
            )
            existing = {k: i for k, i in rows if k is not None}
            if existing and expires_at is not None:
                session.execute(
                    update(Artifact)
                    .where(Artifact.id.in_(existing.values()), Artifact.expires_at < expires_at)
                    .values(expires_at=expires_at)
                )
        ids: list[int] = []
        fresh = False
        for artifact, data, stored in zip(artifacts, validated, blobs, strict=True):
            if artifact.idempotency_key in existing:
                ids.append(existing[artifact.idempotency_key])
                continue
            fresh = True
            row = Artifact(
                category=artifact.category,
                data=data,
                workflow_id=workflow_id,
                activity_id=activity_id,
                idempotency_key=artifact.idempotency_key,
                expires_at=expires_at,
            )
            row.files = [
                FileInArtifact(path=path, file_id=file_ids[blob.sha256]) for path, blob in stored.items()
            ]
            session.add(row)
            session.flush()
            ids.append(row.id)
        return ids, fresh

    @staticmethod
    def _file_ids(session: Session, blobs: list[StoredBlob]) -> dict[str, int]:
        if not blobs:
            return {}
        unique = {b.sha256: b.size for b in blobs}
        session.execute(
            insert(File)
            .values([{"sha256": sha, "size": size} for sha, size in sorted(unique.items())])
            .on_conflict_do_nothing(index_elements=["sha256"])
        )
        # KEY SHARE keeps expiry from deleting these rows until we commit; a row it deleted just now
        # is missing here, and the write is resolved again.
        rows = session.execute(
            select(File.sha256, File.id).where(File.sha256.in_(unique)).with_for_update(key_share=True)
        )
        found = {sha: file_id for sha, file_id in rows}
        if len(found) < len(unique):
            raise _Raced("a file row was expired while this artifact was being registered")
        return found

    @staticmethod
    def _relate(session: Session, ids: list[int], relations: Iterable[Relation]) -> None:
        values = [
            {
                "artifact_id": ids[r.source],
                "target_id": ids[r.target] if r.target_in_batch else r.target,
                "type": str(r.type),
            }
            for r in relations
        ]
        if values:
            session.execute(insert(ArtifactRelation).values(values).on_conflict_do_nothing())

    def activity_artifacts(self, workflow_id: str, activity_id: str) -> list[StoredArtifact]:
        """What any attempt of one activity execution registered, oldest first (one indexed query)."""
        with self.sessions() as session:
            rows = session.execute(
                select(Artifact.id, Artifact.category, Artifact.data, Artifact.idempotency_key)
                .where(Artifact.workflow_id == workflow_id, Artifact.activity_id == activity_id)
                .order_by(Artifact.id)
            )
            return [StoredArtifact(i, c, d, k) for i, c, d, k in rows]

    def artifacts(self, artifact_ids: Iterable[int]) -> dict[int, StoredArtifact]:
        """The artifacts with these ids that exist (one query)."""
        with self.sessions() as session:
            rows = session.execute(
                select(Artifact.id, Artifact.category, Artifact.data, Artifact.idempotency_key).where(
                    Artifact.id.in_(list(artifact_ids))
                )
            )
            return {i: StoredArtifact(i, c, d, k) for i, c, d, k in rows}

    def discard_unreferenced(self, sha256s: Iterable[str]) -> None:
        """Remove blobs this process just wrote and no committed `file` row names."""
        candidates = set(sha256s)
        if not candidates:
            return
        with self.sessions() as session:
            known = set(session.scalars(select(File.sha256).where(File.sha256.in_(candidates))))
        for sha in candidates - known:
            self.blob_path(sha).unlink(missing_ok=True)

    def files_of(self, artifact_ids: Iterable[int]) -> dict[int, dict[str, Path]]:
        """Artifact id → (path in artifact → blob path), in one query."""
        wanted = list(artifact_ids)
        result: dict[int, dict[str, Path]] = {i: {} for i in wanted}
        with self.sessions() as session:
            rows = session.execute(
                select(FileInArtifact.artifact_id, FileInArtifact.path, File.sha256)
                .join(File, File.id == FileInArtifact.file_id)
                .where(FileInArtifact.artifact_id.in_(wanted))
            )
            for artifact_id, path, sha in rows:
                result[artifact_id][path] = self.blob_path(sha)
        return result

    def materialize(self, artifact_ids: Iterable[int], target: Path) -> dict[int, dict[str, Path]]:
        """Copy the files of artifacts into `target` by their paths; return the local paths."""
        result: dict[int, dict[str, Path]] = {}
        for artifact_id, files in self.files_of(artifact_ids).items():
            if not files:
                raise LookupError(f"artifact {artifact_id} has no files or does not exist")
            local: dict[str, Path] = {}
            for path, blob in files.items():
                destination = target / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(blob, destination)
                local[path] = destination
            result[artifact_id] = local
        return result
