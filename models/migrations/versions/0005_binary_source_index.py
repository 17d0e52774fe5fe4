"""binary items by source: a real campaign run finds the binaries of its target and trigger in one probe

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_collection_item_binary_source",
        "collection_item",
        ["collection_id", sa.text("(data ->> 'source')")],
        unique=False,
        postgresql_where=sa.text("removed_at IS NULL AND category = 'debian:binary'"),
    )


def downgrade() -> None:
    op.drop_index("ix_collection_item_binary_source", table_name="collection_item")
