"""suite relation index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:02:41.120394
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suite_relation",
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("collection_id", sa.BigInteger(), nullable=False),
        sa.Column("package", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("architecture", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "kind IN ('depends', 'pre-depends', 'provides', 'binary', 'testsuite', 'testsuite-triggers')",
            name=op.f("ck_suite_relation_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collection.id"],
            name=op.f("fk_suite_relation_collection_id_collection"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["collection_item.id"],
            name=op.f("fk_suite_relation_item_id_collection_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "kind", "target", name=op.f("pk_suite_relation")),
    )
    op.create_index(
        "ix_suite_relation_collection_kind_package",
        "suite_relation",
        ["collection_id", "kind", "package"],
        unique=False,
    )
    op.create_index(
        "ix_suite_relation_collection_kind_target",
        "suite_relation",
        ["collection_id", "kind", "target"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_suite_relation_collection_kind_target", table_name="suite_relation")
    op.drop_index("ix_suite_relation_collection_kind_package", table_name="suite_relation")
    op.drop_table("suite_relation")
