"""the results site's reads: a package's runs by source, an upload run's task history, a campaign's
verdicts in page order, a package's verdicts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHECKS = "category IN ('debian:autopkgtest', 'debian:package-build-log', 'debian:lintian')"


def upgrade() -> None:
    op.create_index(
        "ix_artifact_check_source",
        "artifact",
        [sa.text("(data ->> 'source')"), sa.text("id DESC")],
        unique=False,
        postgresql_where=sa.text(CHECKS),
    )
    op.create_index(
        "ix_task_history_workflow_id",
        "task_history",
        ["workflow_id"],
        unique=False,
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
    )
    op.create_index(
        "ix_collection_item_campaign_verdict",
        "collection_item",
        [sa.text(f"(data ->> '{key}')") for key in ("campaign", "verdict", "package", "architecture")],
        unique=False,
        postgresql_where=sa.text("category = 'debian:qa-result' AND (data ->> 'campaign') IS NOT NULL"),
    )
    op.create_index(
        "ix_collection_item_qa_package",
        "collection_item",
        [sa.text("(data ->> 'package')"), sa.text("id DESC")],
        unique=False,
        postgresql_where=sa.text("category = 'debian:qa-result'"),
    )


def downgrade() -> None:
    op.drop_index("ix_collection_item_qa_package", table_name="collection_item")
    op.drop_index("ix_collection_item_campaign_verdict", table_name="collection_item")
    op.drop_index("ix_task_history_workflow_id", table_name="task_history")
    op.drop_index("ix_artifact_check_source", table_name="artifact")
