"""campaign verdicts by campaign: a report lists every target's verdict in one indexed read

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_collection_item_campaign",
        "collection_item",
        [sa.text("(data ->> 'campaign')")],
        unique=False,
        postgresql_where=sa.text("category = 'debian:qa-result' AND (data ->> 'campaign') IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_collection_item_campaign", table_name="collection_item")
