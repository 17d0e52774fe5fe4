"""`debflow import-suite` verifies the Release signature with gpgv before it imports anything."""

from __future__ import annotations

import hashlib
import lzma
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from activities.suites.release_signature import DEBIAN_ARCHIVE_KEYRING, check_valid_until, release_text
from activities.suites.suite_indices import IndexFile, SuiteImportError, verify_release
from client.archive_signing import ARCHIVE_UID, ThrowawayKey
from client.cli import app
from tests.test_suite import (
    PACKAGES_AMD64,
    PACKAGES_ARM64,
    SOURCES,
    table_counts,
    unique_suite,
    write_indices,
)
from worker.settings import PROJECT_ROOT

BOOKWORM = PROJECT_ROOT.parent / "shared" / "data" / "debian-bookworm"
ENTRIES = {
    "main/source/Sources": SOURCES,
    "main/binary-amd64/Packages": PACKAGES_AMD64,
    "main/binary-arm64/Packages": PACKAGES_ARM64,
}


def release_file(path: Path, *, extra: str = "", entries: dict[str, str] = ENTRIES) -> Path:
    """An unsigned Release for the test indices; `extra` are more fields (e.g. Valid-Until)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f" {hashlib.sha256(c.encode()).hexdigest()} {len(c.encode())} {n}" for n, c in entries.items()]
    path.write_text(f"Origin: debflow\nCodename: test\n{extra}SHA256:\n" + "\n".join(lines) + "\n")
    return path


@dataclass
class Archive:
    """The test indices, a directory for Release files, and the keyring of `key`, the archive's key."""

    sources: Path
    packages: list[Path]
    dir: Path
    key: ThrowawayKey
    keyring: Path


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayKey]:
    with ThrowawayKey() as made:
        yield made


@pytest.fixture
def archive(key: ThrowawayKey, tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Archive:
    monkeypatch.setenv("DEBFLOW_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    sources, packages = write_indices(tmp_path / "indices")
    return Archive(sources, packages, tmp_path / "dists", key, key.export(tmp_path / "keyring.gpg"))


def import_cli(suite: str, archive: Archive, *options: str) -> Result:
    arguments = ["import-suite", suite, "--sources", str(archive.sources), *options]
    for path in archive.packages:
        arguments += ["--packages", str(path)]
    return CliRunner().invoke(app, arguments)


def assert_refused(result: Result, message: str, engine: Engine, before: dict[str, int]) -> None:
    """Exit 2, one `error:` line saying `message`, and not a row written."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert table_counts(engine) == before


def collection_data(engine: Engine, suite: str) -> dict[str, str] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT data FROM collection WHERE name = :n"), {"n": suite}).first()
    return None if row is None else dict(row[0])


def test_good_inrelease_imports_and_its_keyring_is_kept_for_reimports(
    archive: Archive, engine: Engine
) -> None:
    suite = unique_suite()
    in_release = archive.key.sign(release_file(archive.dir / "Release"))
    result = import_cli(suite, archive, "--release", str(in_release), "--keyring", str(archive.keyring))
    assert result.exit_code == 0, result.output
    assert "25 items added" in result.stdout and f"Release signed by {archive.key.fingerprint[-16:]}" in (
        result.stdout.replace("\n", "")
    )
    data = collection_data(engine, suite)
    assert data is not None and data["keyring"] == str(archive.keyring.resolve())

    # A re-import without --keyring uses the kept one (not Debian's, which does not know this key)…
    again = import_cli(suite, archive, "--release", str(in_release))
    assert again.exit_code == 0 and "0 items added" in again.stdout, again.output
    # …and so refuses a Release signed by any other key.
    before = table_counts(engine)
    with ThrowawayKey("someone else <else@debflow.invalid>") as other:
        foreign = other.sign(release_file(archive.dir / "other" / "Release"))
    assert_refused(
        import_cli(suite, archive, "--release", str(foreign)), "not in the keyring", engine, before
    )


def test_release_with_detached_release_gpg_imports(archive: Archive, engine: Engine) -> None:
    release = release_file(archive.dir / "Release")
    archive.key.sign(release)
    (archive.dir / "InRelease").unlink()  # only Release + Release.gpg, as on older mirrors
    result = import_cli(unique_suite(), archive, "--release", str(release), "--keyring", str(archive.keyring))
    assert result.exit_code == 0 and "25 items added" in result.stdout, result.output


def _unsigned(a: Archive) -> Path:
    return release_file(a.dir / "Release")


def _tampered(a: Archive) -> Path:
    # The attacker adds a package to Sources and fixes up its checksum in the signed text.
    in_release = a.key.sign(release_file(a.dir / "Release"))
    sources = SOURCES + "\nPackage: evil\nVersion: 1\nBinary: evil\nArchitecture: any\n"
    a.sources.write_bytes(lzma.compress(sources.encode()))
    old, new = (f"{hashlib.sha256(s.encode()).hexdigest()} {len(s.encode())}" for s in (SOURCES, sources))
    in_release.write_text(in_release.read_text().replace(old, new))
    return in_release


def _unknown_key(a: Archive) -> Path:
    with ThrowawayKey("stranger <stranger@debflow.invalid>") as stranger:
        return stranger.sign(release_file(a.dir / "Release"))


def _expired_valid_until(a: Archive) -> Path:
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    return a.key.sign(release_file(a.dir / "Release", extra=f"Valid-Until: {past}\n"))


def _expired_key(a: Archive) -> Path:
    # Made and used in 2020 with a one-day lifetime: the signature is good, the key long expired.
    with ThrowawayKey("old <old@debflow.invalid>", expires="1d", faked_time="20200101T000000") as old:
        old.export(a.keyring)
        return old.sign(release_file(a.dir / "Release"))


def _revoked_key(a: Archive) -> Path:
    with ThrowawayKey("revoked <revoked@debflow.invalid>") as revoked:
        in_release = revoked.sign(release_file(a.dir / "Release"))
        # gpg writes a revocation certificate at key generation, its armour line defused with a colon.
        certificate = revoked.home / "openpgp-revocs.d" / f"{revoked.fingerprint}.rev"
        armoured = certificate.read_text().replace(":-----BEGIN", "-----BEGIN")
        (revoked.home / "revoke.asc").write_text(armoured)
        revoked.gpg("--import", str(revoked.home / "revoke.asc"))
        revoked.export(a.keyring)
    return in_release


def _appended(a: Archive) -> Path:
    in_release = a.key.sign(release_file(a.dir / "Release"))
    with in_release.open("a") as f:
        f.write("Valid-Until: Sat, 01 Jan 2000 00:00:00 UTC\nSHA256:\n 0000 1 main/source/Sources\n")
    return in_release


def _second_message(a: Archive) -> Path:
    # Two messages, each well signed by the archive key: which one would a reader take?
    first = a.key.sign(release_file(a.dir / "Release")).read_text()
    second = a.key.sign(release_file(a.dir / "Release", entries={"main/source/Sources": "x"}))
    second.write_text(first + second.read_text())
    return second


def _prepended(a: Archive) -> Path:
    in_release = a.key.sign(release_file(a.dir / "Release"))
    in_release.write_text("Origin: evil\n\n" + in_release.read_text())
    return in_release


def _detached_tampered(a: Archive) -> Path:
    release = release_file(a.dir / "Release")
    a.key.sign(release)
    release.write_text(release.read_text().replace("Origin: debflow", "Origin: evil"))
    return release


def _signed_message_as_release_gpg(a: Archive) -> Path:
    # A signed message (its own content inside) is not a signature of the Release beside it.
    release = release_file(a.dir / "Release")
    other = release_file(a.dir / "other", entries={"main/source/Sources": "x"})
    a.key.gpg("--sign", "--output", str(release.with_name("Release.gpg")), str(other))
    return release


def _weak_digest(a: Archive) -> Path:
    release = release_file(a.dir / "Release")
    in_release = release.with_name("InRelease")
    a.key.gpg("--digest-algo", "SHA1", "--clearsign", "--output", str(in_release), str(release))
    return in_release


REFUSALS: dict[str, tuple[Callable[[Archive], Path], str]] = {
    "unsigned": (_unsigned, "is not signed"),
    "tampered": (_tampered, "BAD signature"),
    "unknown-key": (_unknown_key, "not in the keyring"),
    "expired-valid-until": (_expired_valid_until, "(Valid-Until)"),
    "expired-key": (_expired_key, "a signature by an expired key"),
    "revoked-key": (_revoked_key, "a signature by a revoked key"),
    "text-appended": (_appended, "text outside its signed part"),
    "text-prepended": (_prepended, "text outside its signed part"),
    "second-signed-message": (_second_message, "text outside its signed part"),
    "detached-tampered": (_detached_tampered, "BAD signature"),
    "signed-message-as-release-gpg": (_signed_message_as_release_gpg, "no valid OpenPGP signature"),
    "weak-digest": (_weak_digest, "weak digest SHA1"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_release_without_a_good_signature_is_refused(case: str, archive: Archive, engine: Engine) -> None:
    make, message = REFUSALS[case]
    release = make(archive)
    before = table_counts(engine)
    suite = unique_suite()
    result = import_cli(suite, archive, "--release", str(release), "--keyring", str(archive.keyring))
    assert_refused(result, message, engine, before)
    assert collection_data(engine, suite) is None


def test_missing_release_or_keyring_is_refused(archive: Archive, engine: Engine) -> None:
    before = table_counts(engine)
    assert_refused(
        import_cli(unique_suite(), archive), "no Release to verify the indices against", engine, before
    )
    in_release = archive.key.sign(release_file(archive.dir / "Release"))
    missing = archive.dir / "no-such-keyring.gpg"
    result = import_cli(unique_suite(), archive, "--release", str(in_release), "--keyring", str(missing))
    assert_refused(result, f"keyring {missing} not found", engine, before)


def test_insecure_option_skips_the_signature_loudly_but_not_the_checksums(
    archive: Archive, engine: Engine
) -> None:
    unsigned = release_file(archive.dir / "Release")
    result = import_cli(unique_suite(), archive, "--release", str(unsigned), "--insecure-unsigned-release")
    assert result.exit_code == 0 and "25 items added" in result.stdout, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert (
        len(warnings) == 1 and "--insecure-unsigned-release" in warnings[0] and "NOT verified" in warnings[0]
    )
    assert "signed by" not in result.stdout

    before = table_counts(engine)
    wrong = release_file(archive.dir / "wrong" / "Release", entries=ENTRIES | {"main/source/Sources": "x"})
    result = import_cli(unique_suite(), archive, "--release", str(wrong), "--insecure-unsigned-release")
    assert result.exit_code == 2 and "error: " in result.stderr and "checksum mismatch" in result.stderr
    assert table_counts(engine) == before


def test_the_signed_text_is_what_is_used(archive: Archive) -> None:
    release = release_file(archive.dir / "Release")
    in_release = archive.key.sign(release)
    # The text gpgv vouches for, byte for byte: no armour, no Hash header, no signature.
    verified = release_text(in_release, archive.keyring)
    assert verified.content == release.read_bytes()
    assert verified.signed_by == f"{archive.key.fingerprint[-16:]} {ARCHIVE_UID}"


def test_valid_until_in_the_future_is_accepted(tmp_path: Path) -> None:
    future = format_datetime(datetime.now(UTC) + timedelta(days=7), usegmt=True)
    check_valid_until(f"Valid-Until: {future}\n".encode(), tmp_path / "Release")
    with pytest.raises(SuiteImportError, match="malformed Valid-Until"):
        check_valid_until(b"Valid-Until: next week\n", tmp_path / "Release")


@pytest.mark.skipif(not (BOOKWORM / "InRelease").is_file(), reason="../shared/data/debian-bookworm absent")
def test_real_bookworm_inrelease_verifies_against_the_debian_archive_keyring(archive: Archive) -> None:
    verified = release_text(BOOKWORM / "InRelease", DEBIAN_ARCHIVE_KEYRING)
    assert "Debian Archive Automatic Signing Key (12/bookworm)" in verified.signed_by
    assert verified.content.startswith(b"Origin: Debian\n") and b"PGP" not in verified.content
    check_valid_until(verified.content, BOOKWORM / "InRelease")
    # The verified text's SHA256 entries vouch for the real Sources index.
    sources = lzma.decompress((BOOKWORM / "Sources.xz").read_bytes())
    index = IndexFile(
        BOOKWORM / "Sources.xz", hashlib.sha256(sources).hexdigest(), len(sources), "main/source/Sources"
    )
    verify_release(BOOKWORM / "InRelease", [index], verified.content)
    with pytest.raises(SuiteImportError, match="not in the keyring"):
        release_text(BOOKWORM / "InRelease", archive.keyring)
