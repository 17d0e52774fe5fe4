"""The tables: files, artifacts and their relations, collections and task history."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.db import Base, BigId, CreatedAt, JsonData
from models.vocabulary import CollectionCategory, ItemCategory


class RelationType(enum.StrEnum):
    BUILT_USING = "built-using"
    EXTENDS = "extends"
    RELATES_TO = "relates-to"


class File(Base):
    """A blob in the content-addressed store, identified by its SHA-256."""

    __tablename__ = "file"

    id: Mapped[BigId]
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[CreatedAt]

    __table_args__ = (
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("size >= 0", name="size_not_negative"),
    )


class Artifact(Base):
    """A typed record (category + validated JSON) with the files it is made of."""

    __tablename__ = "artifact"

    id: Mapped[BigId]
    category: Mapped[str] = mapped_column(String(64))
    data: Mapped[JsonData]
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    workflow_id: Mapped[str | None] = mapped_column(Text)
    activity_id: Mapped[str | None] = mapped_column(Text)
    # Set by activities so that a retried attempt finds what an earlier attempt already stored.
    idempotency_key: Mapped[str | None] = mapped_column(Text, unique=True)

    files: Mapped[list[FileInArtifact]] = relationship(
        back_populates="artifact", cascade="all, delete-orphan", order_by="FileInArtifact.path"
    )

    __table_args__ = (
        CheckConstraint("category ~ '^[a-z0-9-]+:[a-z0-9-]+$'", name="category_namespaced"),
        Index("ix_artifact_category_created_at", "category", "created_at"),
        Index("ix_artifact_expires_at", "expires_at", postgresql_where=text("expires_at IS NOT NULL")),
        # A retried activity looks up what its interrupted attempts registered (issue 5).
        Index(
            "ix_artifact_workflow_activity",
            "workflow_id",
            "activity_id",
            postgresql_where=text("workflow_id IS NOT NULL"),
        ),
    )


class FileInArtifact(Base):
    """One file of an artifact: its path inside the artifact and the blob it holds."""

    __tablename__ = "file_in_artifact"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("file.id", ondelete="RESTRICT"), index=True)

    artifact: Mapped[Artifact] = relationship(back_populates="files")
    file: Mapped[File] = relationship()

    __table_args__ = (
        CheckConstraint("path <> '' AND path !~ '(^/|(^|/)\\.\\.?(/|$))'", name="path_relative"),
    )


class ArtifactRelation(Base):
    """A typed edge between two artifacts (a binary built from a source, a log relating to a build)."""

    __tablename__ = "artifact_relation"

    id: Mapped[BigId]
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("artifact_id", "target_id", "type"),
        CheckConstraint("type IN ('built-using', 'extends', 'relates-to')", name="type_known"),
    )


class Collection(Base):
    """A named, categorised set of items, e.g. a `debian:suite` or `debian:qa-results`."""

    __tablename__ = "collection"

    id: Mapped[BigId]
    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64))
    data: Mapped[JsonData]
    created_at: Mapped[CreatedAt]
    retains_artifacts: Mapped[bool] = mapped_column(server_default=text("false"))
    # After soft removal, an item keeps its artifact this long, then only its metadata for the second period.
    full_history_retention_days: Mapped[int | None]
    metadata_only_retention_days: Mapped[int | None]

    __table_args__ = (UniqueConstraint("category", "name"),)


class CollectionItem(Base):
    """An entry of a collection, soft-removed by setting `removed_at`."""

    __tablename__ = "collection_item"

    id: Mapped[BigId]
    collection_id: Mapped[int] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64))
    artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifact.id", ondelete="SET NULL"), index=True
    )
    data: Mapped[JsonData]
    created_at: Mapped[CreatedAt]
    created_by_workflow: Mapped[str | None] = mapped_column(Text)
    removed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    removed_by_workflow: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # A name is unique among the active items only; removed ones stay as history.
        Index(
            "uq_collection_item_active_name",
            "collection_id",
            "name",
            unique=True,
            postgresql_where=text("removed_at IS NULL"),
        ),
        Index("ix_collection_item_removed_at", "removed_at", postgresql_where=text("removed_at IS NOT NULL")),
        # A suite's binaries by source: what a real campaign run installs
        # (activities/campaigns/archive_tests.py).
        Index(
            "ix_collection_item_binary_source",
            "collection_id",
            text("(data ->> 'source')"),
            postgresql_where=text("removed_at IS NULL AND category = 'debian:binary'"),
        ),
    )


class TaskHistory(Base):
    """One finished task: what ran, on which worker, how long, with what result and cost."""

    __tablename__ = "task_history"

    id: Mapped[BigId]
    task_name: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    context: Mapped[str] = mapped_column(Text, server_default="")
    worker: Mapped[str] = mapped_column(Text)
    workflow_id: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float] = mapped_column(Float)
    result: Mapped[str] = mapped_column(String(16))
    cpu_user_s: Mapped[float | None] = mapped_column(Float)
    cpu_system_s: Mapped[float | None] = mapped_column(Float)
    max_rss_kb: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[JsonData]

    __table_args__ = (
        CheckConstraint("result IN ('success', 'failure', 'error', 'skipped')", name="result_known"),
        Index("ix_task_history_key_started", "task_name", "subject", "context", "started_at"),
    )


# --- retention and expiry (issue 4) ---------------------------------------------------------------

QA_RESULTS_COLLECTION = CollectionCategory.QA_RESULTS
QA_RESULT_ITEM = ItemCategory.QA_RESULT


class RunningWorkflow(Base):
    """A Temporal workflow that was running when expiry last asked; what it made or owns is kept."""

    __tablename__ = "running_workflow"

    workflow_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seen_at: Mapped[CreatedAt]


# QA results are grouped by these keys of the item data; the N newest of each group stay active.
Index(
    "ix_collection_item_qa_key",
    CollectionItem.collection_id,
    CollectionItem.data["task"].astext,
    CollectionItem.data["package"].astext,
    CollectionItem.data["architecture"].astext,
    CollectionItem.created_at,
    postgresql_where=text(f"removed_at IS NULL AND category = '{QA_RESULT_ITEM}'"),
)

# A campaign's verdicts, one QA result per target (activities/campaigns/campaign_verdicts.py), removed
# ones too.
Index(
    "ix_collection_item_campaign",
    CollectionItem.data["campaign"].astext,
    postgresql_where=text(f"category = '{QA_RESULT_ITEM}' AND (data ->> 'campaign') IS NOT NULL"),
)

# Confirmed regressions by package, newest first: the feeds and the notifier
# (activities/services/newsworthy.py).
Index(
    "ix_collection_item_regression",
    CollectionItem.data["package"].astext,
    CollectionItem.id,
    postgresql_where=text(f"category = '{QA_RESULT_ITEM}' AND (data ->> 'verdict') = 'REGRESSION'"),
)
# The results site (web/): a package's build, lintian and autopkgtest runs, newest first; an upload run's
# task history; a campaign's verdicts in page order; a package's campaign verdicts and references.
Index(
    "ix_artifact_check_source",
    Artifact.data["source"].astext,
    Artifact.id.desc(),
    postgresql_where=text("category IN ('debian:autopkgtest', 'debian:package-build-log', 'debian:lintian')"),
)
Index(
    "ix_task_history_workflow_id",
    TaskHistory.workflow_id,
    postgresql_where=text("workflow_id IS NOT NULL"),
)
Index(
    "ix_collection_item_campaign_verdict",
    CollectionItem.data["campaign"].astext,
    CollectionItem.data["verdict"].astext,
    CollectionItem.data["package"].astext,
    CollectionItem.data["architecture"].astext,
    postgresql_where=text(f"category = '{QA_RESULT_ITEM}' AND (data ->> 'campaign') IS NOT NULL"),
)
Index(
    "ix_collection_item_qa_package",
    CollectionItem.data["package"].astext,
    CollectionItem.id.desc(),
    postgresql_where=text(f"category = '{QA_RESULT_ITEM}'"),
)


# --- debci's API for britney2 (issue 14, models/debci.py) -----------------------------------------


class ApiKey(Base):
    """A caller of the debci API: only the SHA-256 of its key is kept (`debflow keys add` shows it once)."""

    __tablename__ = "api_key"

    id: Mapped[BigId]
    name: Mapped[str] = mapped_column(Text, unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[CreatedAt]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("key_sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),)


class RejectListEntry(Base):
    """A package the debci API refuses to test (in one suite and architecture, or everywhere: NULL)."""

    __tablename__ = "reject_list"

    id: Mapped[BigId]
    package: Mapped[str] = mapped_column(Text)
    suite: Mapped[str | None] = mapped_column(Text)
    architecture: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[CreatedAt]


Index(
    "ux_reject_list_entry",
    RejectListEntry.package,
    func.coalesce(RejectListEntry.suite, ""),
    func.coalesce(RejectListEntry.architecture, ""),
    unique=True,
)


class DebciJob(Base):
    """One test job: identical requests while it is pending share it; `id` is debci's run_id.

    Written twice: by the API call that creates it, and by its batch when it is decided (status,
    version, log). Nothing else updates it, so no job row is ever contended."""

    __tablename__ = "debci_job"

    id: Mapped[BigId]
    job_key: Mapped[str] = mapped_column(String(64))  # models.debci.job_key
    suite: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(Text)
    package: Mapped[str] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(Text)  # the suite's version, once planned
    trigger: Mapped[str] = mapped_column(Text)
    pins: Mapped[list[list[str]]] = mapped_column(JSONB, server_default="[]")
    priority: Mapped[int] = mapped_column(server_default=text("1"))
    is_private: Mapped[bool] = mapped_column(server_default=text("false"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"))
    status: Mapped[str | None] = mapped_column(String(16))  # NULL while pending
    exit_code: Mapped[int | None]
    log_artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifact.id", ondelete="SET NULL"))
    duration_s: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(Text)
    cause: Mapped[str | None] = mapped_column(Text)
    retry_of: Mapped[int | None] = mapped_column(BigInteger)
    batch_workflow_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "status IS NULL OR status IN ('pass', 'fail', 'neutral', 'tmpfail')", name="status_known"
        ),
        CheckConstraint("priority BETWEEN 1 AND 10", name="priority_range"),
        # debci's pending check: one pending job per key; a finished one frees the key.
        Index("ux_debci_job_pending", "job_key", unique=True, postgresql_where=text("status IS NULL")),
        Index("ix_debci_job_updated", "updated_at"),
        Index("ix_debci_job_key", "job_key", "id"),
        Index("ix_debci_job_package", "package", "suite", "architecture", "id"),
        # Artifact expiry sets the log of a job to NULL: found by index, not by a scan per artifact.
        Index("ix_debci_job_log", "log_artifact_id", postgresql_where=text("log_artifact_id IS NOT NULL")),
    )


class DebciRequest(Base):
    """A requester's interest in a job: what `GET /api/v1/test` lists for that key."""

    __tablename__ = "debci_request"

    requester_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("debci_job.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[CreatedAt]

    __table_args__ = (
        Index("ix_debci_request_job", "job_id"),
        Index("ix_debci_request_created", "requester_id", "created_at"),
    )
