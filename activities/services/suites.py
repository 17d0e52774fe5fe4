"""Debian suites for the CLI: importing indices into a suite, and the targets an upload would trigger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from activities.suites.suite import (
    ImportStats,
    TestTarget,
    import_suite,
    reverse_dependency_targets,
    source_binaries,
    suite_mirror,
)


def import_suite_indices(
    sessions: sessionmaker[Session],
    *,
    name: str,
    sources: Path,
    packages: list[Path],
    release: Path | None,
    keyring: Path | None,
    insecure_unsigned_release: bool = False,
    mirror: str | None,
    default_mirror: str,
) -> ImportStats:
    """Import the indices into suite `name` (a re-import writes only what changed); raises
    SuiteImportError on bad indices or signatures. Without `mirror`, the suite keeps the one it was
    imported with, and a new suite gets `default_mirror`."""
    if mirror is None and not suite_mirror(sessions, name):
        mirror = default_mirror
    return import_suite(
        sessions=sessions,
        name=name,
        sources=sources,
        packages=packages,
        release=release,
        keyring=keyring,
        insecure_unsigned_release=insecure_unsigned_release,
        mirror=mirror,
    )


@dataclass(frozen=True)
class ReverseDependencies:
    """The suite's version of a source package and the sources whose autopkgtests an upload of it runs."""

    version: str
    targets: list[TestTarget]


def reverse_dependencies(
    sessions: sessionmaker[Session], *, suite: str, source: str, architecture: str
) -> ReverseDependencies:
    """Raises LookupError for an unknown suite or a source package the suite lacks."""
    with sessions() as session:
        version, binaries = source_binaries(session=session, suite=suite, source=source)
        targets = reverse_dependency_targets(
            session=session, suite=suite, binaries=binaries, architecture=architecture, include_source=source
        )
    return ReverseDependencies(version, targets)
