"""Reading and checking a .dsc, the files it lists and the archives' members, before anything is stored."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822, Dsc
from debian.debian_support import Version

from models.artifacts import SourcePackageData

# Debian Policy 5.6.1 (Source), 5.6.7 (Package) and 5.6.12 (Version).
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")
# A file named by a .dsc is a plain name in the same directory: no separators, no dot-files, no option.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._~-]*$")
# Architecture names and wildcards (any, all, linux-any, any-amd64), Testsuite values.
WORD = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TESTSUITE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
FORMATS = ("1.0", "3.0 (native)", "3.0 (quilt)")
ARCHIVE = re.compile(r"\.tar(\.(gz|xz|bz2|lzma))?$")


class BadUpload(ValueError):
    """The upload is unusable; the message says why in one line."""


@dataclass(frozen=True)
class CheckedSource:
    dsc: Path
    data: SourcePackageData
    files: dict[str, Path]  # name → local path, the .dsc included


def _digests(path: Path) -> dict[str, str]:
    """The checksums a .dsc may list, in one pass over the file."""
    digests = {"Files": hashlib.md5(), "Checksums-Sha1": hashlib.sha1(), "Checksums-Sha256": hashlib.sha256()}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for digest in digests.values():
                digest.update(chunk)
    return {field: digest.hexdigest() for field, digest in digests.items()}


CHECKSUM_KEYS = {"Files": ("md5sum", "MD5"), "Checksums-Sha1": ("sha1", "SHA-1")}


def _regular_file(path: Path, what: str) -> int:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BadUpload(f"{what} {path.name} is missing (looked in {path.parent})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadUpload(f"{what} {path.name} is not a regular file")
    return info.st_size


def _paragraph(name: str, text: str) -> list[str]:
    """The lines of the one control paragraph (inside the OpenPGP wrapper, which is not verified)."""
    lines = text.splitlines()
    if lines and lines[0].startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        _, payload, _ = Deb822.split_gpg_and_payload(line.encode() for line in lines)
        lines = [line.decode() for line in payload]
    while lines and not lines[0].strip():
        lines.pop(0)
    end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    if any(line.strip() for line in lines[end:]):
        raise BadUpload(f"{name} has more than one paragraph")
    fields = [line.split(":", 1)[0].lower() for line in lines[:end] if line[:1] not in ("", " ", "\t", "#")]
    duplicates = sorted({f for f in fields if fields.count(f) > 1})
    if duplicates:
        raise BadUpload(f"{name} has the field {duplicates[0]!r} more than once")
    return lines[:end]


def _list_field(
    dsc: Dsc, field: str, separator: str | None, pattern: re.Pattern[str], what: str
) -> list[str]:
    raw = dsc.get(field, "")
    items = [item.strip() for item in (raw.split(separator) if separator else raw.split())]
    for item in filter(None, items):
        if not pattern.match(item) or "\n" in item:
            raise BadUpload(f"invalid {what} {item!r} in the {field} field")
    return [item for item in items if item]


def check_dsc(
    dsc_path: Path, *, max_bytes: int, max_unpacked_bytes: int = 1 << 62, max_metadata_bytes: int = 1 << 20
) -> CheckedSource:
    """Parse `dsc_path`, verify every file it lists and every archive member; raise BadUpload on the first
    problem."""
    if dsc_path.suffix != ".dsc":
        raise BadUpload(f"{dsc_path.name} is not a .dsc file")
    if not FILE_NAME.match(dsc_path.name):
        raise BadUpload(f"unsafe file name {dsc_path.name!r}")
    size = _regular_file(dsc_path, "source package description")
    if size > max_bytes:
        raise BadUpload(f"{dsc_path.name} is larger than the limit of {max_bytes} bytes")
    try:
        text = dsc_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise BadUpload(f"{dsc_path.name} cannot be parsed: it is not UTF-8 text") from None
    try:
        dsc = Dsc(_paragraph(dsc_path.name, text))
    except ValueError as e:
        raise BadUpload(f"{dsc_path.name} cannot be parsed: {e}") from None
    for field in ("Source", "Version", "Format", "Checksums-Sha256"):
        if not dsc.get(field):
            raise BadUpload(f"{dsc_path.name} has no {field} field")
    name, version, source_format = dsc["Source"].strip(), dsc["Version"].strip(), dsc["Format"].strip()
    if not SOURCE_NAME.match(name) or "\n" in name:
        raise BadUpload(f"{dsc_path.name}: invalid source package name {name!r}")
    if not VERSION.match(version) or "\n" in version:
        raise BadUpload(f"{dsc_path.name}: invalid version {version!r}")
    try:
        Version(version)
    except ValueError as e:
        raise BadUpload(f"{dsc_path.name}: invalid version {version!r}: {e}") from None
    if source_format not in FORMATS:
        raise BadUpload(f"{dsc_path.name}: unknown source format {source_format!r}")
    architecture = _list_field(dsc, "Architecture", None, WORD, "architecture")
    binaries = _list_field(dsc, "Binary", ",", SOURCE_NAME, "binary package name")
    testsuite = _list_field(dsc, "Testsuite", ",", TESTSUITE, "test suite")

    files = {dsc_path.name: dsc_path}
    listed: dict[str, tuple[int, dict[str, str]]] = {}
    total = size
    for entry in dsc["Checksums-Sha256"]:
        file_name = entry["name"]
        if not FILE_NAME.match(file_name):
            raise BadUpload(f"{dsc_path.name} lists an unsafe file name {file_name!r}")
        if file_name in files:
            raise BadUpload(f"{dsc_path.name} lists {file_name} twice")
        local = dsc_path.parent / file_name
        actual_size = _regular_file(local, "file")
        total += actual_size
        if total > max_bytes:
            raise BadUpload(f"{dsc_path.name}: the upload is larger than the limit of {max_bytes} bytes")
        if actual_size != int(entry["size"]):
            raise BadUpload(f"{file_name}: size {actual_size} differs from {entry['size']} in the .dsc")
        digests = _digests(local)
        if digests["Checksums-Sha256"] != entry["sha256"].lower():
            raise BadUpload(f"{file_name}: SHA-256 differs from the .dsc")
        files[file_name] = local
        listed[file_name] = (actual_size, digests)
    # dpkg-source checks every checksum field it finds: all must name the same files, sizes and contents.
    for field, (key, label) in CHECKSUM_KEYS.items():
        entries = dsc.get(field) or []
        if not entries:
            continue
        if sorted((e["name"], int(e["size"])) for e in entries) != sorted(
            (n, s) for n, (s, _) in listed.items()
        ):
            raise BadUpload(f"{dsc_path.name} lists other files in {field} than in Checksums-Sha256")
        for listing in entries:
            if listing[key].lower() != listed[listing["name"]][1][field]:
                raise BadUpload(f"{listing['name']}: {label} differs from the .dsc")
    archives = [path for file_name, path in files.items() if ARCHIVE.search(file_name)]
    if not archives:
        raise BadUpload(f"{dsc_path.name} lists no source archive (.tar, .tar.gz, .tar.xz, .tar.bz2)")
    unpacked = 0
    for archive in archives:
        unpacked += check_source_archive(archive, max_unpacked_bytes=max_unpacked_bytes - unpacked)

    data = SourcePackageData(
        name=name,
        version=version,
        format=source_format,
        architecture=architecture,
        binaries=binaries,
        testsuite=testsuite,
        dsc_filename=dsc_path.name,
        dsc_fields={k: v for k, v in dsc.items() if isinstance(v, str) and "\n" not in v},
    )
    metadata = len(json.dumps(data.model_dump(mode="json")))
    if metadata > max_metadata_bytes:
        raise BadUpload(
            f"{dsc_path.name}: its fields make {metadata} bytes of JSON, over the limit of "
            f"{max_metadata_bytes} bytes"
        )
    return CheckedSource(dsc=dsc_path, data=data, files=files)


def _escapes(member: str, target: str) -> bool:
    """Whether link `target` of archive member `member` points outside the archive's tree."""
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return resolved == ".." or resolved.startswith("../")


def check_source_archive(path: Path, *, max_unpacked_bytes: int) -> int:
    """Refuse an archive with members that extraction could abuse; return its unpacked size.

    Refused: absolute or `..` member names, device files and FIFOs, symbolic or hard links pointing
    outside the tree, and more than `max_unpacked_bytes` of content. Links inside the tree are fine.
    """
    total = 0
    try:
        # Streaming mode reads the archive once, front to back, whatever its compression.
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                name = member.name
                parts = posixpath.normpath(name).split("/")
                if name.startswith("/") or ".." in name.split("/") or parts[0] == "..":
                    raise BadUpload(f"{path.name}: member {name!r} has an absolute or parent path")
                if member.ischr() or member.isblk() or member.isfifo():
                    raise BadUpload(f"{path.name}: member {name!r} is a device file or FIFO")
                if member.issym() and _escapes(name, member.linkname):
                    raise BadUpload(
                        f"{path.name}: symbolic link {name!r} points outside the tree ({member.linkname!r})"
                    )
                if member.islnk() and (member.linkname.startswith("/") or _escapes("", member.linkname)):
                    raise BadUpload(
                        f"{path.name}: hard link {name!r} points outside the tree ({member.linkname!r})"
                    )
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    raise BadUpload(f"{path.name}: member {name!r} is not a file, directory or link")
                total += member.size
                if total > max_unpacked_bytes:
                    raise BadUpload(
                        f"{path.name}: unpacks to more than the limit of {max_unpacked_bytes} bytes"
                    )
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BadUpload(f"{path.name} cannot be read as a tar archive: {e}") from None
    return total


def check_tree(root: Path) -> None:
    """After extraction: no device files, FIFOs or sockets, and no symbolic link leaving `root`."""
    top = root.resolve()
    for directory, subdirs, names in os.walk(root):
        for entry in (*subdirs, *names):
            path = Path(directory, entry)
            mode = path.lstat().st_mode
            relative = path.relative_to(root)
            if stat.S_ISLNK(mode):
                target = os.readlink(path)
                resolved = Path(os.path.normpath(Path(directory).resolve() / target))
                if os.path.isabs(target) or not resolved.is_relative_to(top):
                    raise BadUpload(f"the source tree's symbolic link {relative} points outside it")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise BadUpload(f"the source tree holds {relative}, which is not a file or directory")
