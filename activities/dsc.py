"""Reading and checking a .dsc and the files it lists, before anything is stored."""

from __future__ import annotations

import hashlib
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Dsc
from debian.debian_support import Version

from models.artifacts import SourcePackageData

# Debian Policy 5.6.1 (Source) and 5.6.12 (Version).
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$")
# A file named by a .dsc is a plain name in the same directory: no separators, no dot-files.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._~-]*$")


class BadUpload(ValueError):
    """The upload is unusable; the message says why in one line."""


@dataclass(frozen=True)
class CheckedSource:
    dsc: Path
    data: SourcePackageData
    files: dict[str, Path]  # name → local path, the .dsc included


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _regular_file(path: Path, what: str) -> int:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BadUpload(f"{what} {path.name} is missing (looked in {path.parent})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadUpload(f"{what} {path.name} is not a regular file")
    return info.st_size


def check_dsc(dsc_path: Path, *, max_bytes: int) -> CheckedSource:
    """Parse `dsc_path` and verify every file it lists; raise BadUpload on the first problem."""
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
        dsc = Dsc(text)
    except ValueError as e:
        raise BadUpload(f"{dsc_path.name} cannot be parsed: {e}") from None
    for field in ("Source", "Version", "Format", "Checksums-Sha256"):
        if not dsc.get(field):
            raise BadUpload(f"{dsc_path.name} has no {field} field")
    name, version = dsc["Source"].strip(), dsc["Version"].strip()
    if not SOURCE_NAME.match(name):
        raise BadUpload(f"{dsc_path.name}: invalid source package name {name!r}")
    if not VERSION.match(version):
        raise BadUpload(f"{dsc_path.name}: invalid version {version!r}")
    try:
        Version(version)
    except ValueError as e:
        raise BadUpload(f"{dsc_path.name}: invalid version {version!r}: {e}") from None

    files = {dsc_path.name: dsc_path}
    total = size
    for entry in dsc["Checksums-Sha256"]:
        file_name = entry["name"]
        if not FILE_NAME.match(file_name):
            raise BadUpload(f"{dsc_path.name} lists an unsafe file name {file_name!r}")
        local = dsc_path.parent / file_name
        actual_size = _regular_file(local, "file")
        total += actual_size
        if total > max_bytes:
            raise BadUpload(f"{dsc_path.name}: the upload is larger than the limit of {max_bytes} bytes")
        if actual_size != int(entry["size"]):
            raise BadUpload(f"{file_name}: size {actual_size} differs from {entry['size']} in the .dsc")
        if _sha256(local) != entry["sha256"].lower():
            raise BadUpload(f"{file_name}: SHA-256 differs from the .dsc")
        files[file_name] = local

    data = SourcePackageData(
        name=name,
        version=version,
        format=dsc["Format"].strip(),
        architecture=dsc.get("Architecture", "").split(),
        binaries=[b.strip() for b in dsc.get("Binary", "").split(",") if b.strip()],
        testsuite=[t.strip() for t in dsc.get("Testsuite", "").split(",") if t.strip()],
        dsc_filename=dsc_path.name,
        dsc_fields={k: v for k, v in dsc.items() if isinstance(v, str) and "\n" not in v},
    )
    return CheckedSource(dsc=dsc_path, data=data, files=files)
