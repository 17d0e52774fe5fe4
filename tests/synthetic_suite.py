"""A small synthetic archive (Sources + Packages) for tests and benchmarks that need a suite fast."""

from __future__ import annotations

from pathlib import Path


def _source(name: str, version: str, binary: str, tests: bool = True) -> str:
    testsuite = "Testsuite: autopkgtest\n" if tests else ""
    return f"Package: {name}\nVersion: {version}\nBinary: {binary}\n{testsuite}Architecture: any\n"


def _binary(name: str, version: str, extra: str) -> str:
    return f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n{extra}"


def write_suite(root: Path, trigger: str, dependants: int) -> tuple[Path, Path]:
    """`trigger` builds lib<trigger>1; `dependants` sources with autopkgtests depend on it; one
    dependant without tests does not count."""
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
    return root / "Sources", root / "Packages"
