"""artifact activity index: an activity's retry finds what its earlier attempts stored

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_artifact_workflow_activity",
        "artifact",
        ["workflow_id", "activity_id"],
        unique=False,
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_artifact_workflow_activity", table_name="artifact")
