"""The reject list: packages the debci API refuses to test, everywhere or in one suite and/or architecture
(`debflow reject-list add|remove|list`, `GET /api/v1/reject_list`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from models.debci import SUITE_NAME, BadRequest, check_package
from models.tables import RejectListEntry

ANY = "*"  # debci's wildcard in the reject list's JSON
REASON_MAX = 1000

# Along ux_reject_list_entry (package first): an entry for the package that names this suite or none,
# and this architecture or none.
_REJECTED = text(
    "SELECT EXISTS (SELECT 1 FROM reject_list WHERE package = :package "
    "AND (suite IS NULL OR suite = :suite) AND (architecture IS NULL OR architecture = :architecture))"
)
_REJECTED_OF = text(
    "SELECT DISTINCT package FROM reject_list WHERE package = ANY(:packages) "
    "AND (suite IS NULL OR suite = :suite) AND (architecture IS NULL OR architecture = :architecture)"
)


@dataclass(frozen=True)
class Rejection:
    package: str
    suite: str | None
    architecture: str | None
    reason: str


def is_rejected(session: Session, package: str, suite: str, architecture: str) -> bool:
    """Whether tests of `package` in `suite` on `architecture` are refused (one indexed query)."""
    return bool(
        session.execute(
            _REJECTED, {"package": package, "suite": suite, "architecture": architecture}
        ).scalar()
    )


def rejected_of(session: Session, packages: Iterable[str], suite: str, architecture: str) -> set[str]:
    """Which of many packages are refused in one suite and architecture (one query for a whole call)."""
    names = sorted(set(packages))
    if not names:
        return set()
    rows = session.execute(_REJECTED_OF, {"packages": names, "suite": suite, "architecture": architecture})
    return {name for (name,) in rows}


def _check(package: str, suite: str | None, architecture: str | None, architectures: Iterable[str]) -> None:
    check_package(package)
    if suite is not None and not SUITE_NAME.fullmatch(suite):
        raise BadRequest(f"invalid suite name {suite[:40]!r}")
    if architecture is not None and architecture not in architectures:
        raise BadRequest(f"unknown architecture {architecture[:40]!r}")


def add_entry(
    sessions: sessionmaker[Session],
    package: str,
    *,
    suite: str | None = None,
    architecture: str | None = None,
    reason: str = "",
    architectures: Iterable[str],
) -> bool:
    """Refuse `package` (in `suite` / on `architecture`, None: any); False when the entry existed (its
    reason is then replaced). Raises BadRequest for an invalid name."""
    _check(package, suite, architecture, architectures)
    reason = " ".join(reason.split())
    if len(reason) > REASON_MAX:
        raise BadRequest(f"the reason is {len(reason)} characters long; at most {REASON_MAX}")
    values = insert(RejectListEntry).values(
        package=package, suite=suite, architecture=architecture, reason=reason
    )
    statement = values.on_conflict_do_update(
        index_elements=[
            RejectListEntry.package,
            func.coalesce(RejectListEntry.suite, ""),
            func.coalesce(RejectListEntry.architecture, ""),
        ],
        set_={"reason": values.excluded.reason},
        where=RejectListEntry.reason.is_distinct_from(values.excluded.reason),
    ).returning(text("xmax = 0"))
    with sessions.begin() as db:
        inserted = db.execute(statement).scalar()
    return bool(inserted)


def remove_entry(
    sessions: sessionmaker[Session],
    package: str,
    *,
    suite: str | None = None,
    architecture: str | None = None,
) -> bool:
    """Remove exactly this entry; False when there was none."""
    with sessions.begin() as db:
        removed = db.execute(
            delete(RejectListEntry)
            .where(
                RejectListEntry.package == package,
                func.coalesce(RejectListEntry.suite, "") == (suite or ""),
                func.coalesce(RejectListEntry.architecture, "") == (architecture or ""),
            )
            .returning(RejectListEntry.id)
        ).all()
    return bool(removed)


def list_entries(session: Session) -> list[Rejection]:
    rows = session.execute(
        select(
            RejectListEntry.package,
            RejectListEntry.suite,
            RejectListEntry.architecture,
            RejectListEntry.reason,
        ).order_by(
            RejectListEntry.package,
            func.coalesce(RejectListEntry.suite, ""),
            func.coalesce(RejectListEntry.architecture, ""),
        )
    ).all()
    return [Rejection(*row) for row in rows]


def debci_reject_list(entries: Iterable[Rejection]) -> dict[str, Any]:
    """debci's JSON: package → suite → architecture → version → reason, `*` for any (debflow rejects
    every version of a package, so the version level is always `*`)."""
    data: dict[str, Any] = {}
    for e in entries:
        by_arch = data.setdefault(e.package, {}).setdefault(e.suite or ANY, {})
        by_arch[e.architecture or ANY] = {ANY: e.reason}
    return data
