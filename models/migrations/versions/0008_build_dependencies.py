"""build-dependency relations of suite sources, for rebuild campaigns

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('depends', 'pre-depends', 'provides', 'binary', 'testsuite', 'testsuite-triggers')"
NEW_KINDS = (
    "kind IN ('depends', 'pre-depends', 'provides', 'binary', 'testsuite', 'testsuite-triggers', "
    "'build-depends')"
)


def upgrade() -> None:
    op.add_column("suite_relation", sa.Column("restriction", sa.Text(), nullable=True))
    op.drop_constraint(op.f("ck_suite_relation_kind_known"), "suite_relation", type_="check")
    op.create_check_constraint(op.f("ck_suite_relation_kind_known"), "suite_relation", NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM suite_relation WHERE kind = 'build-depends'")
    op.drop_constraint(op.f("ck_suite_relation_kind_known"), "suite_relation", type_="check")
    op.create_check_constraint(op.f("ck_suite_relation_kind_known"), "suite_relation", OLD_KINDS)
    op.drop_column("suite_relation", "restriction")
