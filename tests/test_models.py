"""The thin model on real PostgreSQL: schema from Alembic, constraints, the artifact store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from activities.storage.store import ArtifactStore, ExpiredReference, NewArtifact, Relation
from models.artifacts import PackageBuildLogData, validate_artifact_data
from models.db import Base
from models.tables import Artifact, Collection, CollectionItem, File, FileInArtifact, RelationType
from tests.conftest import row_counts, store_files


def log_data(**changes: object) -> PackageBuildLogData:
    values: dict[str, object] = {
        "source": "pkg",
        "version": "1.0",
        "architecture": "amd64",
        "filename": "pkg.build",
        "exit_code": 0,
        "result": "success",
    }
    return PackageBuildLogData.model_validate(values | changes)


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_artifact_data_is_validated_per_category() -> None:
    assert validate_artifact_data("debian:package-build-log", log_data())["exit_code"] == 0
    with pytest.raises(ValueError, match="unknown artifact category"):
        validate_artifact_data("debian:nonsense", {})
    with pytest.raises(ValidationError):
        validate_artifact_data("debian:package-build-log", {"source": "pkg"})
    with pytest.raises(ValidationError):  # extra fields are refused, not silently stored
        validate_artifact_data("debian:package-build-log", log_data().model_dump() | {"evil": 1})


def test_identical_content_is_stored_once(store: ArtifactStore, tmp_path: Path, engine: Engine) -> None:
    first, second = tmp_path / "a.build", tmp_path / "b.build"
    first.write_text("same bytes\n" * 100)
    second.write_text("same bytes\n" * 100)
    ids = store.register(
        [
            NewArtifact("debian:package-build-log", log_data(), {"a.build": first}),
            NewArtifact("debian:package-build-log", log_data(), {"b.build": second}),
        ]
    )
    with engine.connect() as conn:
        file_ids = (
            conn.execute(select(FileInArtifact.file_id).where(FileInArtifact.artifact_id.in_(ids)))
            .scalars()
            .all()
        )
    assert len(ids) == 2 and len(set(file_ids)) == 1
    files = store.files_of(ids)
    assert files[ids[0]]["a.build"] == files[ids[1]]["b.build"]
    assert files[ids[0]]["a.build"].read_text() == first.read_text()


def test_idempotency_key_returns_the_existing_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    log = tmp_path / "x.build"
    log.write_text("log\n")
    key = f"wf-{tmp_path.name}/1/log"
    (first,) = store.register([NewArtifact("debian:package-build-log", log_data(), {"x.build": log}, key)])
    (again,) = store.register([NewArtifact("debian:package-build-log", log_data(), {"x.build": log}, key)])
    assert first == again


def test_failed_registration_leaves_no_rows_and_no_blobs(
    store: ArtifactStore, tmp_path: Path, engine: Engine
) -> None:
    log = tmp_path / "unique.build"
    log.write_text(f"content only this test has: {tmp_path}\n")
    rows, blobs = row_counts(engine), store_files(store.root)
    with pytest.raises(ExpiredReference, match=r"Key \(target_id\)=\(\d+\) is not present"):
        store.register(
            [NewArtifact("debian:package-build-log", log_data(), {"unique.build": log})],
            relations=[Relation(0, 2**62, RelationType.RELATES_TO)],  # no such artifact
        )
    assert row_counts(engine) == rows
    assert store_files(store.root) - blobs == set()


def test_paths_in_artifacts_cannot_escape(sessions: sessionmaker[Session]) -> None:
    for bad in ("../etc/passwd", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(IntegrityError), sessions.begin() as session:
            artifact = Artifact(category="debian:package-build-log", data={})
            file = File(sha256="0" * 64, size=0)
            session.add_all([artifact, file])
            session.flush()
            session.add(FileInArtifact(artifact_id=artifact.id, path=bad, file_id=file.id))


def test_collection_item_names_are_unique_among_active_items(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        collection = Collection(name=f"bookworm-{dt.datetime.now().timestamp()}", category="debian:suite")
        session.add(collection)
        session.flush()
        session.add(CollectionItem(collection_id=collection.id, name="hello_1.0", category="debian:source"))
        collection_id = collection.id
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(CollectionItem(collection_id=collection_id, name="hello_1.0", category="debian:source"))
    with sessions.begin() as session:
        item = session.scalars(
            select(CollectionItem).where(CollectionItem.collection_id == collection_id)
        ).one()
        item.removed_at = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:  # the removed item stays as history; the name is free again
        session.add(CollectionItem(collection_id=collection_id, name="hello_1.0", category="debian:source"))
    with sessions() as session:
        count = session.scalar(select(func.count()).where(CollectionItem.collection_id == collection_id))
    assert count == 2
