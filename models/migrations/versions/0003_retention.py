"""retention: running workflows seen by expiry, the QA-results grouping index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 11:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "running_workflow",
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("workflow_id", name=op.f("pk_running_workflow")),
    )
    op.create_index(
        "ix_collection_item_qa_key",
        "collection_item",
        [
            "collection_id",
            sa.text("(data ->> 'task')"),
            sa.text("(data ->> 'package')"),
            sa.text("(data ->> 'architecture')"),
            "created_at",
        ],
        unique=False,
        postgresql_where=sa.text("removed_at IS NULL AND category = 'debian:qa-result'"),
    )


def downgrade() -> None:
    op.drop_index("ix_collection_item_qa_key", table_name="collection_item")
    op.drop_table("running_workflow")
