"""Suite import (checksums, minimal writes) and reverse dependencies, on a small suite written here."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from activities.suites.suite import (
    TestTarget,
    import_suite,
    reverse_dependency_targets,
    source_binaries,
    suite_state,
)
from activities.suites.suite_indices import SuiteImportError
from client.archive_signing import ARCHIVE_UID, ThrowawayKey
from client.cli import app

SOURCES = """\
Package: libfoo
Version: 1.0-1
Binary: libfoo1, libfoo-dev
Architecture: any
Testsuite: autopkgtest
Directory: pool/main/libf/libfoo

Package: direct
Version: 1.0
Binary: direct-bin
Architecture: any
Testsuite: autopkgtest

Package: direct
Version: 2.0
Binary: direct-bin
Architecture: any
Testsuite: autopkgtest

Package: pre
Version: 1
Binary: pre-bin
Architecture: any
Testsuite: autopkgtest, autopkgtest-pkg-perl

Package: alt
Version: 1
Binary: alt-bin
Architecture: any
Testsuite: autopkgtest

Package: virtual
Version: 1
Binary: virt-bin
Architecture: any
Testsuite: autopkgtest

Package: qualified
Version: 1
Binary: q-bin
Architecture: any
Testsuite: autopkgtest-pkg-python

Package: docs
Version: 1
Binary: docs-bin
Architecture: all
Testsuite: autopkgtest

Package: triggered
Version: 1
Binary: t-bin
Architecture: any
Testsuite: autopkgtest
Testsuite-Triggers: @builddeps@, libfoo-dev, python3

Package: untested
Version: 1
Binary: u-bin
Architecture: any

Package: unrelated
Version: 1
Binary: un-bin
Architecture: any
Testsuite: autopkgtest

Package: armonly
Version: 1
Binary: oa-bin
Architecture: arm64
Testsuite: autopkgtest

Package: kept
Version: 0.9
Binary: kept-bin
Architecture: any
Testsuite: autopkgtest
Testsuite-Triggers: libfoo1
Extra-Source-Only: yes
"""

PACKAGES_AMD64 = """\
Package: libfoo1
Version: 1.0-1
Architecture: amd64
Source: libfoo
Depends: libc6 (>= 2.34)
Provides: foo-api (= 1.0)
Filename: pool/main/libf/libfoo/libfoo1_1.0-1_amd64.deb

Package: libfoo-dev
Version: 1.0-1
Architecture: amd64
Source: libfoo

Package: direct-bin
Version: 2.0+b1
Architecture: amd64
Source: direct (2.0)
Depends: libfoo1 (>= 1.0), libc6

Package: pre-bin
Version: 1
Architecture: amd64
Source: pre
Pre-Depends: libfoo1

Package: alt-bin
Version: 1
Architecture: amd64
Source: alt
Depends: libbar-dev | libfoo-dev

Package: virt-bin
Version: 1
Architecture: amd64
Source: virtual
Depends: foo-api

Package: q-bin
Version: 1
Architecture: amd64
Source: qualified
Depends: libfoo1:any, python3:any

Package: docs-bin
Version: 1
Architecture: all
Source: docs
Depends: libfoo-dev

Package: t-bin
Version: 1
Architecture: amd64
Source: triggered
Depends: python3

Package: u-bin
Version: 1
Architecture: amd64
Source: untested
Depends: libfoo1

Package: un-bin
Version: 1
Architecture: amd64
Source: unrelated
Depends: libc6
"""

PACKAGES_ARM64 = """\
Package: oa-bin
Version: 1
Architecture: arm64
Source: armonly
Depends: libfoo1

Package: docs-bin
Version: 1
Architecture: all
Source: docs
Depends: libfoo-dev
"""

SUITE_TABLES = ("collection", "collection_item", "suite_relation")


def write_indices(root: Path, sources: str = SOURCES, amd64: str = PACKAGES_AMD64) -> tuple[Path, list[Path]]:
    """Sources as xz, the amd64 Packages as gzip and the arm64 one uncompressed: every reader at once."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Sources.xz").write_bytes(lzma.compress(sources.encode()))
    (root / "Packages_amd64.gz").write_bytes(gzip.compress(amd64.encode()))
    (root / "Packages_arm64").write_text(PACKAGES_ARM64)
    return root / "Sources.xz", [root / "Packages_amd64.gz", root / "Packages_arm64"]


def write_release(path: Path, entries: dict[str, str]) -> Path:
    """A (non-signed) Release file listing the SHA-256 of the uncompressed `entries` contents."""
    lines = [f" {hashlib.sha256(c.encode()).hexdigest()} {len(c.encode())} {n}" for n, c in entries.items()]
    path.write_text("Origin: Debian\nCodename: test\nSHA256:\n" + "\n".join(lines) + "\n")
    return path


def unique_suite() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


ROW_QUERIES = {
    "collection": "SELECT id, xmin::text FROM collection WHERE name = :name",
    "collection_item": "SELECT id, xmin::text, removed_at FROM collection_item WHERE {where} ORDER BY id",
    "suite_relation": "SELECT item_id, kind, target, xmin::text FROM suite_relation WHERE {where}"
    " ORDER BY 1, 2, 3",
}


def suite_rows(engine: Engine, suite: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the suite with its xmin: a row that was rewritten in any way gets a new one."""
    where = "collection_id = (SELECT id FROM collection WHERE name = :name)"
    with engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(query.format(where=where)), {"name": suite})]
            for table, query in ROW_QUERIES.items()
        }


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in SUITE_TABLES}


def test_reverse_dependencies_on_a_small_suite(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    suite = unique_suite()
    sources, packages = write_indices(tmp_path)
    stats = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=packages, insecure_unsigned_release=True
    )
    assert (stats.inserted, stats.removed, stats.unchanged) == (25, 0, 0)
    with sessions() as session:
        assert suite_state(session=session, suite=suite) == stats.state
        version, binaries = source_binaries(session=session, suite=suite, source="libfoo")
        assert (version, binaries) == ("1.0-1", ["libfoo1", "libfoo-dev"])
        assert source_binaries(session=session, suite=suite, source="direct")[0] == "2.0"  # the newest
        targets = reverse_dependency_targets(session=session, suite=suite, binaries=binaries)
        with_trigger = reverse_dependency_targets(
            session=session, suite=suite, binaries=binaries, include_source="libfoo"
        )
        on_arm64 = reverse_dependency_targets(
            session=session, suite=suite, binaries=binaries, architecture="arm64", include_source="libfoo"
        )
        # A source without tests is not added, even when named.
        untested = reverse_dependency_targets(
            session=session, suite=suite, binaries=["nothing"], include_source="untested"
        )
    # direct: Depends with a version; pre: Pre-Depends; alt: second alternative; virtual: Depends on
    # foo-api, which libfoo1 Provides; qualified: libfoo1:any; docs: an arch-all binary; triggered:
    # Testsuite-Triggers. Not: untested (no Testsuite), unrelated, armonly (not on amd64), kept
    # (Extra-Source-Only), u-bin's source.
    assert [t.source for t in targets] == [
        *("alt", "direct", "docs", "pre", "qualified", "triggered", "virtual"),
    ]
    assert targets[1] == TestTarget("direct", "2.0", ("autopkgtest",))
    assert targets[3].testsuite == ("autopkgtest", "autopkgtest-pkg-perl")
    assert targets[4].testsuite == ("autopkgtest-pkg-python",)
    assert [t.source for t in with_trigger] == sorted([*(t.source for t in targets), "libfoo"])
    assert [t.source for t in on_arm64] == ["armonly", "docs", "libfoo", "triggered"]
    assert untested == []


def test_unknown_suite_and_source_are_lookup_errors(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    suite = unique_suite()
    sources, packages = write_indices(tmp_path)
    import_suite(
        sessions=sessions, name=suite, sources=sources, packages=packages, insecure_unsigned_release=True
    )
    with sessions() as session:
        with pytest.raises(LookupError, match="unknown suite 'no-such-suite'"):
            reverse_dependency_targets(session=session, suite="no-such-suite", binaries=["libfoo1"])
        with pytest.raises(LookupError, match="unknown suite"):
            suite_state(session=session, suite="no-such-suite")
        with pytest.raises(LookupError, match="'kept' is not in suite"):  # Extra-Source-Only
            source_binaries(session=session, suite=suite, source="kept")


def test_release_checksums_are_verified_before_anything_is_written(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = unique_suite()
    sources, packages = write_indices(tmp_path)
    entries = {
        "main/source/Sources": SOURCES,
        "main/binary-amd64/Packages": PACKAGES_AMD64,
        "main/binary-arm64/Packages": PACKAGES_ARM64,
    }
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    keyring = tmp_path / "keyring.gpg"
    # Both signed by the key the import trusts: only the checksums tell them apart.
    with ThrowawayKey() as key:
        good = key.sign(write_release(tmp_path / "good" / "Release", entries))
        bad = key.sign(
            write_release(
                tmp_path / "bad" / "Release", entries | {"main/binary-amd64/Packages": PACKAGES_AMD64 + "\n"}
            )
        )
        key.export(keyring)
    before = table_counts(engine)
    with pytest.raises(SuiteImportError, match="checksum mismatch with main/binary-amd64/Packages"):
        import_suite(
            sessions=sessions, name=suite, sources=sources, packages=packages, release=bad, keyring=keyring
        )
    assert table_counts(engine) == before

    monkeypatch.setenv("DEBFLOW_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    arguments = ["import-suite", suite, "--sources", str(sources), "--release", str(bad)]
    arguments += ["--keyring", str(keyring)]
    for path in packages:
        arguments += ["--packages", str(path)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "checksum mismatch" in result.stderr
    assert table_counts(engine) == before

    stats = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=packages, release=good, keyring=keyring
    )
    assert stats.inserted == 25 and stats.signed_by.endswith(ARCHIVE_UID)


def test_identical_reimport_writes_no_row(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    suite = unique_suite()
    sources, packages = write_indices(tmp_path)
    first = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=packages, insecure_unsigned_release=True
    )
    rows = suite_rows(engine, suite)
    # The same content, differently compressed: same items, same state.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "Sources").write_text(SOURCES)
    again = import_suite(
        sessions=sessions,
        name=suite,
        sources=tmp_path / "plain" / "Sources",
        packages=packages,
        insecure_unsigned_release=True,
    )
    assert (again.inserted, again.removed, again.unchanged) == (0, 0, 25)
    assert again.state == first.state
    assert suite_rows(engine, suite) == rows


def test_changed_reimport_writes_only_the_changes(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    suite = unique_suite()
    sources, packages = write_indices(tmp_path / "old")
    first = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=packages, insecure_unsigned_release=True
    )
    before = suite_rows(engine, suite)
    # alt-bin no longer depends on libfoo-dev (changed), un-bin is gone, new-bin appears.
    amd64 = PACKAGES_AMD64.replace("Depends: libbar-dev | libfoo-dev", "Depends: libbar-dev")
    amd64 = amd64.replace(
        "Package: un-bin\nVersion: 1\nArchitecture: amd64\nSource: unrelated\nDepends: libc6\n", ""
    )
    amd64 += "\nPackage: new-bin\nVersion: 1\nArchitecture: amd64\nSource: unrelated\nDepends: libfoo1\n"
    sources, packages = write_indices(tmp_path / "new", amd64=amd64)
    again = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=packages, insecure_unsigned_release=True
    )
    assert (again.inserted, again.removed, again.unchanged) == (2, 2, 23)
    assert again.state != first.state
    after = suite_rows(engine, suite)

    old_items = {row[0]: row for row in before["collection_item"]}
    changed = [row for row in after["collection_item"] if old_items.get(row[0]) != row]
    assert len(changed) == 4  # two soft-removed, two inserted
    assert sum(1 for row in changed if row[2] is not None) == 2
    removed_ids = {row[0] for row in changed if row[2] is not None}
    kept = [row for row in before["suite_relation"] if row[0] not in removed_ids]
    assert [row for row in after["suite_relation"] if row[0] in old_items] == kept
    assert after["collection"] != before["collection"]  # the new state

    with sessions() as session:
        targets = reverse_dependency_targets(session=session, suite=suite, binaries=["libfoo1", "libfoo-dev"])
    names = [t.source for t in targets]
    assert "alt" not in names and "unrelated" in names
