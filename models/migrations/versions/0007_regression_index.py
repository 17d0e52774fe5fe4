"""confirmed regressions by package: the Atom feeds and the notifier read them in one indexed read

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-15 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_collection_item_regression",
        "collection_item",
        [sa.text("(data ->> 'package')"), "id"],
        unique=False,
        postgresql_where=sa.text("category = 'debian:qa-result' AND (data ->> 'verdict') = 'REGRESSION'"),
    )


def downgrade() -> None:
    op.drop_index("ix_collection_item_regression", table_name="collection_item")
