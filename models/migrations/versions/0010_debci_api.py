"""debci's API for britney2: API keys, the reject list, test jobs and who requested them

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("key_sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_api_key_sha256_hex")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_key_key_sha256")),
        sa.UniqueConstraint("name", name=op.f("uq_api_key_name")),
    )
    op.create_table(
        "reject_list",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("package", sa.Text(), nullable=False),
        sa.Column("suite", sa.Text(), nullable=True),
        sa.Column("architecture", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reject_list")),
    )
    op.create_index(
        "ux_reject_list_entry",
        "reject_list",
        ["package", sa.text("coalesce(suite, '')"), sa.text("coalesce(architecture, '')")],
        unique=True,
    )
    op.create_table(
        "debci_job",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_key", sa.String(length=64), nullable=False),
        sa.Column("suite", sa.Text(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=False),
        sa.Column("package", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("pins", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("is_private", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("requester_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("log_artifact_id", sa.BigInteger(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("retry_of", sa.BigInteger(), nullable=True),
        sa.Column("batch_workflow_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('pass', 'fail', 'neutral', 'tmpfail')",
            name=op.f("ck_debci_job_status_known"),
        ),
        sa.CheckConstraint("priority BETWEEN 1 AND 10", name=op.f("ck_debci_job_priority_range")),
        sa.ForeignKeyConstraint(
            ["log_artifact_id"],
            ["artifact.id"],
            name=op.f("fk_debci_job_log_artifact_id_artifact"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["api_key.id"], name=op.f("fk_debci_job_requester_id_api_key")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_debci_job")),
    )
    op.create_index(
        "ux_debci_job_pending",
        "debci_job",
        ["job_key"],
        unique=True,
        postgresql_where=sa.text("status IS NULL"),
    )
    op.create_index("ix_debci_job_updated", "debci_job", ["updated_at"], unique=False)
    op.create_index("ix_debci_job_key", "debci_job", ["job_key", "id"], unique=False)
    op.create_index(
        "ix_debci_job_package", "debci_job", ["package", "suite", "architecture", "id"], unique=False
    )
    op.create_index(
        "ix_debci_job_log",
        "debci_job",
        ["log_artifact_id"],
        unique=False,
        postgresql_where=sa.text("log_artifact_id IS NOT NULL"),
    )
    op.create_table(
        "debci_request",
        sa.Column("requester_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["debci_job.id"], name=op.f("fk_debci_request_job_id_debci_job"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["api_key.id"], name=op.f("fk_debci_request_requester_id_api_key")
        ),
        sa.PrimaryKeyConstraint("requester_id", "job_id", name=op.f("pk_debci_request")),
    )
    op.create_index("ix_debci_request_job", "debci_request", ["job_id"], unique=False)
    op.create_index("ix_debci_request_created", "debci_request", ["requester_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_debci_request_created", table_name="debci_request")
    op.drop_index("ix_debci_request_job", table_name="debci_request")
    op.drop_table("debci_request")
    op.drop_index(
        "ix_debci_job_log", table_name="debci_job", postgresql_where=sa.text("log_artifact_id IS NOT NULL")
    )
    op.drop_index("ix_debci_job_package", table_name="debci_job")
    op.drop_index("ix_debci_job_key", table_name="debci_job")
    op.drop_index("ix_debci_job_updated", table_name="debci_job")
    op.drop_index("ux_debci_job_pending", table_name="debci_job", postgresql_where=sa.text("status IS NULL"))
    op.drop_table("debci_job")
    op.drop_index("ux_reject_list_entry", table_name="reject_list")
    op.drop_table("reject_list")
    op.drop_table("api_key")
