"""Reading stored artifacts for people: metadata, files, relations and the log, without SQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.storage.store import ArtifactStore
from models.tables import Artifact, ArtifactRelation, File, FileInArtifact
from models.vocabulary import ArtifactCategory


class ArtifactFile(BaseModel):
    path: str
    size: int
    sha256: str


class ArtifactRelationView(BaseModel):
    type: str
    direction: str  # "to": this artifact → other; "from": other → this artifact
    artifact_id: int
    category: str


class ArtifactView(BaseModel):
    """One artifact as `debflow artifact show` tells it."""

    id: int
    category: str
    data: dict[str, Any]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    workflow_id: str | None
    activity_id: str | None
    files: list[ArtifactFile] = Field(default_factory=list)
    relations: list[ArtifactRelationView] = Field(default_factory=list)
    log_path: str | None = None  # which of the files is the log, if the category has one


class NoLog(LookupError):
    """The artifact exists but holds no log, or its log's blob is gone from the store."""


def log_file(category: str, data: dict[str, Any], paths: list[str]) -> str | None:
    """Which file of an artifact is its log: a build names it, autopkgtest stores `log`, lintian
    stores its one output file."""
    wanted: str | None = None
    if category == ArtifactCategory.PACKAGE_BUILD_LOG:
        wanted = data.get("filename")
    elif category == ArtifactCategory.AUTOPKGTEST:
        wanted = "log"
    elif category == ArtifactCategory.LINTIAN and len(paths) == 1:
        wanted = paths[0]
    return wanted if wanted in paths else None


class ArtifactViews:
    """Artifacts read from PostgreSQL and the content-addressed store (a few short queries each)."""

    def __init__(self, sessions: sessionmaker[Session], store: ArtifactStore) -> None:
        self.sessions = sessions
        self.store = store

    def artifact(self, artifact_id: int) -> ArtifactView | None:
        with self.sessions() as session:
            row = session.get(Artifact, artifact_id)
            if row is None:
                return None
            files = session.execute(
                select(FileInArtifact.path, File.size, File.sha256)
                .join(File, File.id == FileInArtifact.file_id)
                .where(FileInArtifact.artifact_id == artifact_id)
                .order_by(FileInArtifact.path)
            ).all()
            relations = [
                ArtifactRelationView(type=kind, direction=direction, artifact_id=other, category=category)
                for direction, mine, theirs in (
                    ("to", ArtifactRelation.artifact_id, ArtifactRelation.target_id),
                    ("from", ArtifactRelation.target_id, ArtifactRelation.artifact_id),
                )
                for kind, other, category in session.execute(
                    select(ArtifactRelation.type, theirs, Artifact.category)
                    .join(Artifact, Artifact.id == theirs)
                    .where(mine == artifact_id)
                    .order_by(ArtifactRelation.id)
                )
            ]
            view = ArtifactView(
                id=row.id,
                category=row.category,
                data=row.data,
                created_at=row.created_at,
                expires_at=row.expires_at,
                workflow_id=row.workflow_id,
                activity_id=row.activity_id,
                files=[ArtifactFile(path=p, size=size, sha256=sha) for p, size, sha in files],
                relations=relations,
            )
        view.log_path = log_file(view.category, view.data, [f.path for f in view.files])
        return view

    def log_blob(self, view: ArtifactView) -> Path:
        """The blob holding the artifact's log; NoLog says why there is none."""
        if view.log_path is None:
            names = ", ".join(f.path for f in view.files) or "none"
            raise NoLog(f"artifact {view.id} is a {view.category}, which has no log (its files: {names})")
        sha = next(f.sha256 for f in view.files if f.path == view.log_path)
        blob = self.store.blob_path(sha)
        if not blob.is_file():
            raise NoLog(f"the log of artifact {view.id} ({view.log_path}) is missing from the store {blob}")
        return blob

    def data_of(self, artifact_ids: list[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        """Category and data of the artifacts that exist (one query): what the upload report details."""
        return {i: (a.category, a.data) for i, a in self.store.artifacts(artifact_ids).items()}
