"""The OpenPGP signature of an archive's InRelease (or Release + Release.gpg), checked with gpgv like apt."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from debian import deb822

from activities.suites.suite_indices import SuiteImportError

# Debian's own archive keys (package debian-archive-keyring): what apt trusts for deb.debian.org.
DEBIAN_ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

CLEARSIGN_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
SIGNATURE_END = b"-----END PGP SIGNATURE-----"
# OpenPGP hash algorithms apt no longer accepts for Release files: MD5, SHA1, RIPEMD160.
WEAK_DIGESTS = {"1": "MD5", "2": "SHA1", "3": "RIPEMD160"}
# gpgv status keywords of a signature that checked out mathematically but must not be trusted: gpgv
# itself exits 0 for an expired or revoked key, so its exit status alone is not enough.
REFUSED = {
    "BADSIG": "a BAD signature (the file was changed after signing)",
    "EXPSIG": "an expired signature",
    "EXPKEYSIG": "a signature by an expired key",
    "REVKEYSIG": "a signature by a revoked key",
}


@dataclass(frozen=True)
class VerifiedRelease:
    """The Release text a good signature covers, and who made that signature."""

    content: bytes
    signed_by: str  # "<key id> <user id>" of the first good signature


def release_text(release: Path, keyring: Path) -> VerifiedRelease:
    """The signed content of `release`: an InRelease (clearsigned) file, or a Release file with its
    detached `Release.gpg` beside it. Raise SuiteImportError unless a key of `keyring` signed it and no
    signature on it is bad, expired, revoked or over a weak digest."""
    raw = _read(release)
    keyring = keyring.resolve()  # gpgv looks a name without a slash up in its home directory
    if not keyring.is_file():
        hint = " (install debian-archive-keyring)" if keyring == DEBIAN_ARCHIVE_KEYRING else ""
        raise SuiteImportError(f"keyring {keyring} not found{hint}: give the suite's keyring with --keyring")
    if shutil.which("gpgv") is None:
        raise SuiteImportError("gpgv not found: install the gpgv package to verify Release signatures")
    # A private, empty home: gpgv reads no keyring but the one given (never ~/.gnupg), and the files it
    # checks are copies that cannot change between the check and the read.
    with tempfile.TemporaryDirectory(prefix="debflow-gpgv-") as home:
        lines = [line.rstrip(b"\r \t") for line in raw.split(b"\n")]
        if CLEARSIGN_BEGIN in lines:
            _refuse_text_outside(lines, release)
            signed = Path(home, "InRelease")
            signed.write_bytes(raw)
            output = Path(home, "signed-text")
            status = _gpgv(home, keyring, release, "--output", str(output), str(signed))
            content = output.read_bytes() if output.exists() else b""
        else:
            detached = release.with_name(release.name + ".gpg")
            if not detached.is_file():
                raise SuiteImportError(
                    f"{release} is not signed: no clearsigned InRelease and no {detached.name} beside it "
                    "(--insecure-unsigned-release skips the check, for a local test archive only)"
                )
            data = Path(home, "Release")
            data.write_bytes(raw)
            signature = Path(home, "Release.gpg")
            signature.write_bytes(_read(detached))
            status = _gpgv(home, keyring, release, str(signature), str(data))
            content = raw
    signer = _judge(status, release, keyring)
    return VerifiedRelease(content, signer)


def check_valid_until(content: bytes, release: Path, now: datetime | None = None) -> None:
    """Refuse a Release past its Valid-Until: an old, validly signed Release replayed to freeze the suite."""
    value = deb822.Deb822(content.decode("utf-8", "replace").split("\n")).get("Valid-Until")
    if value is None:
        return
    try:
        valid_until = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise SuiteImportError(f"{release} has a malformed Valid-Until: {value!r}") from None
    if valid_until.tzinfo is None:
        valid_until = valid_until.replace(tzinfo=UTC)  # RFC 2822 "-0000": UTC
    if valid_until < (now or datetime.now(UTC)):
        raise SuiteImportError(f"{release} expired at {value} (Valid-Until): refusing a stale Release")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SuiteImportError(f"cannot read {path}: {e.strerror or e}") from None


def _refuse_text_outside(lines: list[bytes], release: Path) -> None:
    """Refuse anything but blank lines around the one signed message, as apt does: gpgv would ignore it,
    and any other reader of the file might not."""
    start = lines.index(CLEARSIGN_BEGIN)
    ends = [i for i, line in enumerate(lines) if line == SIGNATURE_END]
    outside = lines[:start] + (lines[ends[0] + 1 :] if ends else [])
    if not ends or lines.count(CLEARSIGN_BEGIN) > 1 or any(line.strip() for line in outside):
        raise SuiteImportError(f"{release} has text outside its signed part (or no signature block)")


def _gpgv(home: str, keyring: Path, release: Path, *args: str) -> list[list[str]]:
    try:
        completed = subprocess.run(
            ["gpgv", "--status-fd", "1", "--keyring", str(keyring), *args],
            env={**os.environ, "GNUPGHOME": home, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise SuiteImportError(f"gpgv did not finish checking {release} in 120 s") from None
    return [line.split()[1:] for line in completed.stdout.splitlines() if line.startswith("[GNUPG:] ")]


def _judge(status: list[list[str]], release: Path, keyring: Path) -> str:
    """apt's rule: at least one good signature by a key of the keyring, and no bad or untrustworthy one
    (signatures by keys that are not in the keyring are ignored)."""
    good: list[str] = []
    missing: list[str] = []
    for words in status:
        keyword, rest = words[0], words[1:]
        if keyword in REFUSED:
            raise SuiteImportError(f"{release}: {REFUSED[keyword]}, by {' '.join(rest)}")
        if keyword == "VALIDSIG" and len(rest) > 7 and rest[7] in WEAK_DIGESTS:
            raise SuiteImportError(
                f"{release}: signed over the weak digest {WEAK_DIGESTS[rest[7]]} by {rest[0]}"
            )
        if keyword == "GOODSIG":
            good.append(" ".join(rest))
        elif keyword == "NO_PUBKEY":
            missing.extend(rest[:1])
    if good:
        return good[0]
    if missing:
        raise SuiteImportError(
            f"{release} is signed by key {', '.join(missing)}, which is not in the keyring {keyring}"
        )
    raise SuiteImportError(f"{release}: no valid OpenPGP signature found")
