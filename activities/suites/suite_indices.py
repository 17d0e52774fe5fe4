"""Reading Debian archive indices (Sources, Packages, InRelease) into suite items and their relations."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian import deb822
from debian.deb822 import PkgRelation

from activities.suites.build_dependencies import BUILD_DEPENDS_FIELDS, build_dependency_names
from models.suite import BINARY_ITEM, SOURCE_ARCHITECTURE, SOURCE_ITEM, RelationKind

SOURCE_FIELDS = [
    *("Package", "Version", "Binary", "Architecture", "Testsuite", "Testsuite-Triggers"),
    *("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep", "Extra-Source-Only", "Directory"),
    "Checksums-Sha256",
]
BINARY_FIELDS = [
    *("Package", "Version", "Architecture", "Source", "Depends", "Pre-Depends", "Provides", "Filename"),
    *("SHA256", "Size"),
]

# (kind, target, package, source, architecture, restriction): one row of the suite_relation table, less
# its ids; the restriction is that of build-dependencies (activities/suites/build_dependencies.py).
RelationRow = tuple[str, str, str, str, str, str | None]


class SuiteImportError(ValueError):
    """Bad suite input: an unreadable index, a malformed paragraph, a checksum that does not match."""


@dataclass(frozen=True)
class SuiteItem:
    """One `debian:source` or `debian:binary` item as it will be stored, with its relation rows."""

    category: str
    name: str
    data: dict[str, Any]
    relations: tuple[RelationRow, ...]


@dataclass(frozen=True)
class IndexFile:
    """One index as read: where it comes from, its uncompressed SHA-256 and size, its Release path."""

    path: Path
    sha256: str
    size: int
    release_path: str  # e.g. main/source/Sources, main/binary-amd64/Packages


@dataclass(frozen=True)
class SuiteIndices:
    """Everything one import brings: the files read and the items they describe, by item name."""

    files: tuple[IndexFile, ...]
    items: dict[str, SuiteItem]


def read_uncompressed(path: Path) -> bytes:
    """The content of an index, decompressed according to its magic bytes (xz, gzip or none)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SuiteImportError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if raw.startswith(b"\xfd7zXZ\x00"):
            return lzma.decompress(raw)
        if raw.startswith(b"\x1f\x8b"):
            return gzip.decompress(raw)
    except (lzma.LZMAError, OSError, EOFError) as e:
        raise SuiteImportError(f"{path} is corrupt: {e}") from None
    return raw


def split_list(value: str) -> list[str]:
    """A comma-separated field (possibly folded over lines) as its distinct non-empty values."""
    return list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def relation_names(value: str) -> list[str]:
    """Every package name a relation field mentions: each alternative, without version or arch qualifier."""
    if not value:
        return []
    return list(dict.fromkeys(alt["name"] for group in PkgRelation.parse_relations(value) for alt in group))


def pool_component(path: str) -> str:
    """`main` from pool/main/h/hello(/…): the archive component, for the Release entry name."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "pool" else "main"


def checksum_files(value: str, where: Path) -> list[dict[str, Any]]:
    """A `Checksums-Sha256` field (one " <sha256> <size> <name>" per line) as name/sha256/size dicts."""
    files: list[dict[str, Any]] = []
    for line in value.splitlines():
        if not line.strip():
            continue  # the field's first line, empty in a multiline field
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise SuiteImportError(f"{where}: malformed Checksums-Sha256 line: {line.strip()!r}")
        files.append({"name": parts[2], "sha256": parts[0], "size": int(parts[1])})
    return files


def _size(paragraph: deb822.Deb822, where: Path) -> int:
    value = paragraph.get("Size", "") or "0"
    if not value.isdigit():
        raise SuiteImportError(f"{where}: {paragraph.get('Package')} has a malformed Size: {value!r}")
    return int(value)


def source_item(paragraph: deb822.Deb822, where: Path) -> SuiteItem:
    name, version = _required(paragraph, where)
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "architecture": paragraph.get("Architecture", ""),
        "binaries": split_list(paragraph.get("Binary", "")),
        "testsuite": split_list(paragraph.get("Testsuite", "")),
        "testsuite_triggers": split_list(paragraph.get("Testsuite-Triggers", "")),
        "build_depends": paragraph.get("Build-Depends", ""),
        "build_depends_arch": paragraph.get("Build-Depends-Arch", ""),
        "build_depends_indep": paragraph.get("Build-Depends-Indep", ""),
        # Where the .dsc and its tarballs are, relative to the mirror root: what an executor downloads.
        "directory": paragraph.get("Directory", ""),
        "files": checksum_files(paragraph.get("Checksums-Sha256", ""), where),
    }
    relations: tuple[RelationRow, ...] = ()
    if paragraph.get("Extra-Source-Only") == "yes":
        # Kept in the archive only for the sources of Built-Using binaries: nothing to test or to build.
        data["extra_source_only"] = True
    else:
        relations = tuple(
            (str(kind), target, name, name, SOURCE_ARCHITECTURE, None)
            for kind, targets in (
                (RelationKind.BINARY, data["binaries"]),
                (RelationKind.TESTSUITE, data["testsuite"]),
                (RelationKind.TESTSUITE_TRIGGERS, data["testsuite_triggers"]),
            )
            for target in targets
        ) + tuple(
            (str(RelationKind.BUILD_DEPENDS), target, name, name, SOURCE_ARCHITECTURE, restriction)
            for target, restriction in _build_dependencies(paragraph, where).items()
        )
    return SuiteItem(SOURCE_ITEM, f"{name}_{version}", data, relations)


def binary_item(paragraph: deb822.Deb822, where: Path) -> SuiteItem:
    name, version = _required(paragraph, where)
    architecture = paragraph.get("Architecture", "")
    # "Source: glibc (2.36-9)" when the source version differs (binNMUs); absent when the names are equal.
    source, _, source_version = paragraph.get("Source", name).partition(" ")
    data: dict[str, Any] = {
        "name": name,
        "version": version,
        "architecture": architecture,
        "source": source,
        "source_version": source_version.strip("() ") or version,
        "depends": paragraph.get("Depends", ""),
        "pre_depends": paragraph.get("Pre-Depends", ""),
        "provides": paragraph.get("Provides", ""),
        "filename": paragraph.get("Filename", ""),
        "sha256": paragraph.get("SHA256", ""),
        "size": _size(paragraph, where),
    }
    relations = tuple(
        (str(kind), target, name, source, architecture, None)
        for kind, field in (
            (RelationKind.DEPENDS, "depends"),
            (RelationKind.PRE_DEPENDS, "pre_depends"),
            (RelationKind.PROVIDES, "provides"),
        )
        for target in relation_names(data[field])
    )
    return SuiteItem(BINARY_ITEM, f"{name}_{version}_{architecture}", data, relations)


def _build_dependencies(paragraph: deb822.Deb822, where: Path) -> dict[str, str | None]:
    """The names the three Build-Depends fields name in the default build profile, with their
    architecture restrictions (activities/suites/build_dependencies.py)."""
    value = ", ".join(v for f in BUILD_DEPENDS_FIELDS if (v := paragraph.get(f, "").strip()))
    if not value:
        return {}
    try:
        return build_dependency_names(PkgRelation.parse_relations(value))
    except (ValueError, AttributeError) as e:
        raise SuiteImportError(
            f"{where}: {paragraph.get('Package')} has malformed Build-Depends: {e}"
        ) from None


def _required(paragraph: deb822.Deb822, where: Path) -> tuple[str, str]:
    name, version = paragraph.get("Package"), paragraph.get("Version")
    if not name or not version:
        raise SuiteImportError(f"{where}: a paragraph has no Package or Version field: {dict(paragraph)}")
    return str(name), str(version)


def _paragraphs(content: bytes, fields: list[str]) -> Iterable[deb822.Deb822]:
    # The base class: the Sources/Packages subclasses add relation parsing we do not use, at 30 % more time.
    return deb822.Deb822.iter_paragraphs(io.BytesIO(content), fields=fields, use_apt_pkg=False)


def read_sources(path: Path) -> tuple[IndexFile, list[SuiteItem]]:
    content = read_uncompressed(path)
    items: list[SuiteItem] = []
    component = "main"
    for paragraph in _paragraphs(content, SOURCE_FIELDS):
        if not items:
            component = pool_component(paragraph.get("Directory", ""))
        items.append(source_item(paragraph, path))
    return _index_file(path, content, f"{component}/source/Sources"), items


def read_packages(path: Path) -> tuple[IndexFile, list[SuiteItem]]:
    content = read_uncompressed(path)
    items: list[SuiteItem] = []
    component = "main"
    for paragraph in _paragraphs(content, BINARY_FIELDS):
        if not items:
            component = pool_component(paragraph.get("Filename", ""))
        items.append(binary_item(paragraph, path))
    # binary-all/Packages holds only `all`; binary-amd64/Packages holds amd64 and (since bookworm) `all`.
    architectures = {item.data["architecture"] for item in items} - {"all"}
    if len(architectures) > 1:
        raise SuiteImportError(f"{path} mixes architectures {', '.join(sorted(architectures))}")
    architecture = architectures.pop() if architectures else "all"
    return _index_file(path, content, f"{component}/binary-{architecture}/Packages"), items


def _index_file(path: Path, content: bytes, release_path: str) -> IndexFile:
    return IndexFile(path, hashlib.sha256(content).hexdigest(), len(content), release_path)


def read_indices(sources: Path, packages: Sequence[Path]) -> SuiteIndices:
    """Parse one Sources and any number of Packages files; a name seen twice keeps its first item."""
    files: list[IndexFile] = []
    items: dict[str, SuiteItem] = {}
    for index_file, parsed in [read_sources(sources), *(read_packages(p) for p in packages)]:
        files.append(index_file)
        for item in parsed:
            # Architecture `all` binaries are in every binary-<arch>/Packages: one item is enough.
            items.setdefault(item.name, item)
    return SuiteIndices(tuple(files), items)


def verify_release(release: Path, files: Iterable[IndexFile], content: bytes | None = None) -> None:
    """Check each file's SHA-256 and size against the (In)Release entry of its path; raise on mismatch.
    `content` is the Release text to use, the one its signature covers (suites/release_signature.py);
    without it the file is read as it is, a clearsigned wrapper skipped by the parser, unchecked."""
    if content is None:
        content = read_uncompressed(release)
    entries = {e["name"]: e for e in deb822.Release(content).get("SHA256", [])}
    if not entries:
        raise SuiteImportError(f"{release} has no SHA256 field: is it a Release or InRelease file?")
    for file in files:
        entry = entries.get(file.release_path)
        if entry is None:
            raise SuiteImportError(f"{file.path}: {release} has no SHA256 entry for {file.release_path}")
        if entry["sha256"] != file.sha256 or int(entry["size"]) != file.size:
            raise SuiteImportError(
                f"{file.path}: checksum mismatch with {file.release_path} in {release}: SHA256 "
                f"{file.sha256} ({file.size} bytes), expected {entry['sha256']} ({entry['size']} bytes)"
            )
