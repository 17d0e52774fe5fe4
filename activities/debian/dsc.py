"""Checking a .dsc, the files it lists and the archives' members, before anything is stored."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version

from activities.debian.bad_upload import BadUpload
from activities.debian.control import ControlError, Paragraph, read_checksums, read_paragraph
from activities.debian.source_archives import (
    ARCHIVE,
    DEFAULT_MAX_MEMBERS,
    check_archives,
    check_source_archive,
    check_tree,
)
from models.artifacts import SourcePackageData

__all__ = ["ARCHIVE", "BadUpload", "CheckedSource", "check_dsc", "check_source_archive", "check_tree"]

# Debian Policy 5.6.1 (Source), 5.6.7 (Package) and 5.6.12 (Version).
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")
# A file named by a .dsc is a plain name in the same directory: no separators, no dot-files, no option.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._~-]*$")
NAME_MAX = 255  # bytes in one file name (Linux filesystems)
# Architecture names and wildcards (any, all, linux-any, any-amd64), Testsuite values.
WORD = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TESTSUITE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
FORMATS = ("1.0", "3.0 (native)", "3.0 (quilt)")
CHECKSUM_FIELDS = ("Files", "Checksums-Sha1", "Checksums-Sha256")
DIGESTS = {"Files": hashlib.md5, "Checksums-Sha1": hashlib.sha1, "Checksums-Sha256": hashlib.sha256}
LABELS = {"Files": "MD5", "Checksums-Sha1": "SHA-1", "Checksums-Sha256": "SHA-256"}


@dataclass(frozen=True)
class CheckedSource:
    dsc: Path
    data: SourcePackageData
    files: dict[str, Path]  # name → local path, the .dsc included


def _digests(path: Path) -> dict[str, str]:
    """The checksums a .dsc may list, in one pass over the file."""
    digests = {field: make() for field, make in DIGESTS.items()}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for digest in digests.values():
                digest.update(chunk)
    return {field: digest.hexdigest() for field, digest in digests.items()}


def _regular_file(path: Path, what: str) -> int:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BadUpload(f"{what} {path.name} is missing (looked in {path.parent})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadUpload(f"{what} {path.name} is not a regular file")
    return info.st_size


def _list_field(
    paragraph: Paragraph, field: str, separator: str | None, pattern: re.Pattern[str], what: str
) -> list[str]:
    raw = paragraph.get(field)
    items = [item.strip() for item in (raw.split(separator) if separator else raw.split())]
    for item in filter(None, items):
        if not pattern.match(item) or "\n" in item:
            raise BadUpload(f"invalid {what} {item!r} in the {field} field")
    return [item for item in items if item]


def _check_version(version: str) -> Version:
    """The version as dpkg reads it: an empty revision (`1.0-`) or upstream part is refused."""
    if not VERSION.match(version):
        raise BadUpload(f"invalid version {version!r}")
    if version.endswith("-"):
        raise BadUpload(f"invalid version {version!r}: its Debian revision is empty")
    try:
        return Version(version)
    except ValueError as e:
        raise BadUpload(f"invalid version {version!r}: {e}") from None


def _check_file_set(source_format: str, names: list[str], name: str, version: Version) -> None:
    """The files each source format may list, as dpkg-source -x requires them."""
    base = f"{name}_{version.upstream_version}"
    full = f"{name}_{version.upstream_version}" + (
        f"-{version.debian_revision}" if version.debian_revision else ""
    )
    ext = r"\.(?:gz|bz2|lzma|xz)"
    b, f = re.escape(base), re.escape(full)
    if source_format == "3.0 (native)":
        tarballs = [n for n in names if re.fullmatch(rf"{f}\.tar{ext}", n)]
        others = [n for n in names if n not in tarballs]
        if others:
            raise BadUpload(
                f"{others[0]} does not belong in a 3.0 (native) source package (only {full}.tar.*)"
            )
        if len(tarballs) != 1:
            raise BadUpload(
                f"a 3.0 (native) source package needs exactly one {full}.tar.* (it lists {len(tarballs)})"
            )
    elif source_format == "3.0 (quilt)":
        kinds = {
            "orig": rf"{b}\.orig\.tar{ext}",
            "orig signature": rf"{b}\.orig\.tar{ext}\.asc",
            "component": rf"{b}\.orig-[A-Za-z0-9-]+\.tar{ext}",
            "component signature": rf"{b}\.orig-[A-Za-z0-9-]+\.tar{ext}\.asc",
            "debian": rf"{f}\.debian\.tar{ext}",
        }
        seen: set[str] = set()
        found: dict[str, list[str]] = {kind: [] for kind in kinds}
        for listed in names:
            kind = next((k for k, pattern in kinds.items() if re.fullmatch(pattern, listed)), None)
            if kind is None:
                raise BadUpload(f"{listed} does not belong in a 3.0 (quilt) source package")
            stem = re.sub(rf"{ext}(\.asc)?$", r"*\1", listed)
            if stem in seen:
                raise BadUpload(f"a 3.0 (quilt) source package lists {stem} twice (two compressions)")
            seen.add(stem)
            found[kind].append(listed)
        if not found["orig"] or not found["debian"]:
            missing = f"{base}.orig.tar.*" if not found["orig"] else f"{full}.debian.tar.*"
            raise BadUpload(f"a 3.0 (quilt) source package needs {missing}")
        for signature in found["orig signature"] + found["component signature"]:
            if signature.removesuffix(".asc") not in names:
                raise BadUpload(f"{signature} signs a tarball the .dsc does not list")
    else:  # 1.0: one .tar.gz (orig or native), an optional .diff.gz
        tarballs = [n for n in names if re.fullmatch(rf"({b}\.orig|{f})\.tar\.gz", n)]
        allowed = {*tarballs, f"{base}.orig.tar.gz.asc", f"{full}.diff.gz"}
        others = [n for n in names if n not in allowed]
        if others:
            raise BadUpload(f"{others[0]} does not belong in a 1.0 source package")
        if len(tarballs) != 1:
            raise BadUpload(f"a 1.0 source package needs exactly one .tar.gz (it lists {len(tarballs)})")


def _read(dsc_path: Path, max_bytes: int) -> Paragraph:
    if dsc_path.suffix != ".dsc":
        raise BadUpload(f"{dsc_path.name} is not a .dsc file")
    if not FILE_NAME.match(dsc_path.name) or len(dsc_path.name.encode()) > NAME_MAX:
        raise BadUpload(f"unsafe file name {dsc_path.name!r}")
    size = _regular_file(dsc_path, "source package description")
    if size > max_bytes:
        raise BadUpload(f"{dsc_path.name} is larger than the limit of {max_bytes} bytes")
    try:
        return read_paragraph(dsc_path.read_bytes())
    except ControlError as e:
        raise BadUpload(f"{dsc_path.name} cannot be parsed: {e}") from None


def check_dsc(
    dsc_path: Path,
    *,
    max_bytes: int,
    max_unpacked_bytes: int = 1 << 62,
    max_metadata_bytes: int = 1 << 20,
    max_archive_members: int = DEFAULT_MAX_MEMBERS,
    extract_in: Path | None = None,
) -> CheckedSource:
    """Parse `dsc_path`, verify every file it lists and every archive member; raise BadUpload on the first
    problem. With `extract_in`, dpkg-source -x then unpacks it there (in a directory removed afterwards)
    and the tree it made is checked: what dpkg-source refuses is bad input too."""
    paragraph = _read(dsc_path, max_bytes)
    try:
        return _check(
            dsc_path,
            paragraph,
            max_bytes,
            max_unpacked_bytes,
            max_metadata_bytes,
            max_archive_members,
            extract_in,
        )
    except BadUpload as e:
        message = str(e)
        raise BadUpload(
            message if message.startswith(dsc_path.name) else f"{dsc_path.name}: {message}"
        ) from None


def _check(
    dsc_path: Path,
    paragraph: Paragraph,
    max_bytes: int,
    max_unpacked_bytes: int,
    max_metadata_bytes: int,
    max_archive_members: int,
    extract_in: Path | None,
) -> CheckedSource:
    for field in ("Source", "Version", "Format", "Checksums-Sha256", "Files"):
        if not paragraph.get(field).strip():
            raise BadUpload(f"has no {field} field")
    name, version = paragraph.get("Source").strip(), paragraph.get("Version").strip()
    source_format = paragraph.get("Format").strip()
    if not SOURCE_NAME.match(name) or "\n" in name:
        raise BadUpload(f"invalid source package name {name!r}")
    parsed = _check_version(version)
    if source_format not in FORMATS:
        raise BadUpload(f"unknown source format {source_format!r}")
    architecture = _list_field(paragraph, "Architecture", None, WORD, "architecture")
    if not architecture:
        raise BadUpload("its Architecture field is empty or missing: nothing would be built")
    binaries = _list_field(paragraph, "Binary", ",", SOURCE_NAME, "binary package name")
    testsuite = _list_field(paragraph, "Testsuite", ",", TESTSUITE, "test suite")

    listings = {}
    for field in CHECKSUM_FIELDS:
        try:
            listings[field] = read_checksums(paragraph, field)
        except ControlError as e:
            raise BadUpload(str(e)) from None
    names = [entry.name for entry in listings["Checksums-Sha256"]]
    for file_name in names:
        if not FILE_NAME.match(file_name):
            raise BadUpload(f"lists an unsafe file name {file_name!r}")
        if len(file_name.encode()) > NAME_MAX:
            raise BadUpload(f"lists a file name longer than {NAME_MAX} bytes ({file_name[:40]}...)")
    if len(set(names)) != len(names) or dsc_path.name in names:
        raise BadUpload(f"lists {next(n for n in names if names.count(n) > 1 or n == dsc_path.name)} twice")
    for field in ("Files", "Checksums-Sha1"):
        if listings[field] and sorted((e.name, e.size) for e in listings[field]) != sorted(
            (e.name, e.size) for e in listings["Checksums-Sha256"]
        ):
            raise BadUpload(f"lists other files in {field} than in Checksums-Sha256")
    _check_file_set(source_format, names, name, parsed)
    data = SourcePackageData(
        name=name,
        version=version,
        format=source_format,
        architecture=architecture,
        binaries=binaries,
        testsuite=testsuite,
        dsc_filename=dsc_path.name,
        dsc_fields={k: v for k, v in paragraph.items() if "\n" not in v},
    )
    metadata = len(json.dumps(data.model_dump(mode="json")))
    if metadata > max_metadata_bytes:
        raise BadUpload(
            f"its fields make {metadata} bytes of JSON, over the limit of {max_metadata_bytes} bytes"
        )

    files = {dsc_path.name: dsc_path}
    total = dsc_path.stat().st_size
    for entry in listings["Checksums-Sha256"]:
        local = dsc_path.parent / entry.name
        actual_size = _regular_file(local, "file")
        total += actual_size
        if total > max_bytes:
            raise BadUpload(f"the upload is larger than the limit of {max_bytes} bytes")
        if actual_size != entry.size:
            raise BadUpload(f"{entry.name}: size {actual_size} differs from {entry.size} in the .dsc")
        files[entry.name] = local
    for file_name in names:
        digests = _digests(files[file_name])
        for field in reversed(CHECKSUM_FIELDS):  # SHA-256 first: the strongest names the mismatch
            for listing in listings[field]:
                if listing.name == file_name and listing.checksum != digests[field]:
                    raise BadUpload(f"{file_name}: {LABELS[field]} differs from the .dsc")
    archives = [path for file_name, path in files.items() if ARCHIVE.search(file_name)]
    if not archives:
        raise BadUpload("lists no source archive (.tar, .tar.gz, .tar.xz, .tar.bz2)")
    check_archives(archives, max_unpacked_bytes=max_unpacked_bytes, max_members=max_archive_members)
    if extract_in is not None:
        _extract_and_check(dsc_path, extract_in)

    return CheckedSource(dsc=dsc_path, data=data, files=files)


def _extract_and_check(dsc_path: Path, scratch: Path) -> None:
    """dpkg-source -x as the judge of what unpacks (after the member checks made it safe to try): its
    refusal is bad input; the tree it made is checked with the real filesystem."""
    from activities.tools.process import require_tool

    require_tool("dpkg-source", "dpkg-dev")
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dsc-check-", dir=scratch))
    try:
        try:
            done = _run_dpkg_source(dsc_path, work)
        except subprocess.TimeoutExpired:
            raise BadUpload(
                f"dpkg-source -x did not finish unpacking it within {EXTRACT_TIMEOUT_S} s"
            ) from None
        if done.returncode != 0:
            errors = [
                line for line in done.stderr.splitlines() if "error:" in line
            ] or done.stderr.splitlines()
            why = errors[-1].split("error:", 1)[-1].strip() if errors else f"exit {done.returncode}"
            raise BadUpload(f"dpkg-source -x refuses it: {why}")
        check_tree(work / "tree")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# The member checks bound what it unpacks; this bounds how long a hostile archive may keep it busy.
EXTRACT_TIMEOUT_S = 600


def _run_dpkg_source(dsc_path: Path, work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # Signatures are not ours to judge here; the checksums were verified above.
        ["dpkg-source", "--no-check", "--no-copy", "-x", str(dsc_path.resolve()), "tree"],
        cwd=work,
        capture_output=True,
        text=True,
        errors="replace",
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work)},
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=EXTRACT_TIMEOUT_S,
    )
