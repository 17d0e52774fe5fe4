"""A small synthetic archive (Sources + Packages + signed InRelease) for tests and benchmarks that need a
suite fast."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from client.archive_signing import sign_release


class SyntheticSuite(NamedTuple):
    """The files of a synthetic suite: its indices, its InRelease and the keyring that signed it."""

    sources: Path
    packages: Path
    release: Path
    keyring: Path


def _source(name: str, version: str, binary: str, tests: bool = True) -> str:
    testsuite = "Testsuite: autopkgtest\n" if tests else ""
    return f"Package: {name}\nVersion: {version}\nBinary: {binary}\n{testsuite}Architecture: any\n"


def _binary(name: str, version: str, extra: str) -> str:
    return f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}"


def write_suite(root: Path, trigger: str, dependants: int) -> SyntheticSuite:
    """`trigger` builds lib<trigger>1; `dependants` sources with autopkgtests depend on it; one
    dependant without tests does not count. The Release is signed by a throwaway key (`keyring`)."""
    library = f"lib{trigger}1"
    sources = [_source(trigger, "1.0", library)]
    packages = [_binary(library, "1.0", f"Source: {trigger}\n")]
    for i in range(dependants):
        name = f"{trigger}-user{i:04d}"
        sources.append(_source(name, f"2.{i}", name))
        packages.append(_binary(name, f"2.{i}", f"Depends: {library} (>= 1.0)\n"))
    sources.append(_source(f"{trigger}-untested", "1", f"{trigger}-untested", tests=False))
    packages.append(_binary(f"{trigger}-untested", "1", f"Depends: {library}\n"))
    (root / "Sources").write_text("\n".join(sources))
    (root / "Packages").write_text("\n".join(packages))
    entries = {"main/source/Sources": root / "Sources", "main/binary-amd64/Packages": root / "Packages"}
    lines = [
        f" {hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_size} {name}"
        for name, p in entries.items()
    ]
    (root / "Release").write_text(f"Codename: {root.name}\nSHA256:\n" + "\n".join(lines) + "\n")
    release = sign_release(root / "Release", root / "keyring.gpg")
    return SyntheticSuite(root / "Sources", root / "Packages", release, root / "keyring.gpg")
