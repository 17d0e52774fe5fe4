"""The normalised relation index of `debian:suite` collections, for set-based reverse-dependency queries."""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base
from models.vocabulary import CollectionCategory, ItemCategory

SUITE_CATEGORY = CollectionCategory.SUITE
SOURCE_ITEM = ItemCategory.SOURCE
BINARY_ITEM = ItemCategory.BINARY
# The `architecture` of relations that belong to a source item rather than to a binary.
SOURCE_ARCHITECTURE = "source"


class RelationKind(enum.StrEnum):
    # Of binary items: what the binary needs or offers.
    DEPENDS = "depends"
    PRE_DEPENDS = "pre-depends"
    PROVIDES = "provides"
    # Of source items: the binaries it builds (Binary), its test suites (Testsuite) and the packages whose
    # changes should trigger its tests (Testsuite-Triggers).
    BINARY = "binary"
    TESTSUITE = "testsuite"
    TESTSUITE_TRIGGERS = "testsuite-triggers"
    # Of source items: a package name its Build-Depends, Build-Depends-Arch or Build-Depends-Indep names
    # (activities/suites/build_dependencies.py says which relations count).
    BUILD_DEPENDS = "build-depends"


class SuiteRelation(Base):
    """One package name an active suite item relates to; rewritten only when its item changes."""

    __tablename__ = "suite_relation"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("collection_item.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    target: Mapped[str] = mapped_column(Text, primary_key=True)
    # Denormalised from the item so that the queries never read the JSON of thousands of items.
    collection_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("collection.id", ondelete="CASCADE"))
    package: Mapped[str] = mapped_column(Text)  # the binary's name, or the source's name for source items
    source: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(String(32))
    # Build-Depends only: the architecture lists the relation is restricted to ("amd64 i386", "!hurd-any"),
    # several joined by "|" when the name appears more than once; NULL: it applies on every architecture.
    restriction: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "kind IN ('depends', 'pre-depends', 'provides', 'binary', 'testsuite', 'testsuite-triggers', "
            "'build-depends')",
            name="kind_known",
        ),
        # Reverse lookups: who depends on / is triggered by these names.
        Index("ix_suite_relation_collection_kind_target", "collection_id", "kind", "target"),
        # Forward lookups: what these binaries provide, what this source tests or builds.
        Index("ix_suite_relation_collection_kind_package", "collection_id", "kind", "package"),
    )
