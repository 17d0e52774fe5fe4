"""Real Debian packages with long names: the examples copied under other names, for the long-name tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from client.local_archive import variant
from worker.settings import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"
# Longer than bookworm's longest source name (71), within what debflow accepts (100).
LONG_HELLO = "hello-debflow-with-a-source-package-name-longer-than-the-longest-one-in-bookworm"
LONG_GREETER = "greeter-debflow-relaying-the-greeting-of-a-package-whose-name-is-longer-than-seventy-one"
# With the name above, more than 100 characters of name and version together (a native version: no revision).
LONG_VERSION = "1.0+really1.0~with.an.upstream.snapshot.20261202"


def renamed(tree: Path, dest: Path, names: Mapping[str, str], version: str | None = None) -> Path:
    """A copy of an example tree with its package names replaced everywhere (file contents and file names),
    in the order given; `version` replaces the newest changelog entry's version."""
    shutil.copytree(tree, dest, symlinks=True)
    for path in sorted(dest.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_file() and not path.is_symlink():
            text = path.read_text()
            for old, new in names.items():
                text = text.replace(old, new)
            path.write_text(text)
        name = path.name
        for old, new in names.items():
            name = name.replace(old, new)
        if name != path.name:
            path.rename(path.with_name(name))
    if version is not None:
        changelog = dest / "debian" / "changelog"
        first, rest = changelog.read_text().split("\n", 1)
        source, _, tail = first.partition(" (")
        changelog.write_text(f"{source} ({version}){tail.split(')', 1)[1]}\n{rest}")
    return dest


def long_hello_tree(root: Path, version: str | None = None) -> Path:
    return renamed(EXAMPLES / "hello-debflow", root / LONG_HELLO, {"hello-debflow": LONG_HELLO}, version)


def long_greeter_tree(root: Path) -> Path:
    names = {"greeter-debflow": LONG_GREETER, "hello-debflow": LONG_HELLO}
    return renamed(EXAMPLES / "greeter-debflow", root / LONG_GREETER, names)


def source_package(tree: Path) -> Path:
    """`dpkg-source -b` the tree beside it; returns the .dsc."""
    subprocess.run(["dpkg-source", "-b", tree.name], cwd=tree.parent, check=True, capture_output=True)
    return next(tree.parent.glob(f"{tree.name}_*.dsc"))


def long_hello_with_a_new_greeting(root: Path) -> Path:
    """LONG_HELLO 1.1 greeting differently (as client.local_archive.hello_with_a_new_greeting does for
    hello-debflow): its own tests pass, LONG_GREETER's regress."""
    base = long_hello_tree(root / "base")
    tree = variant(
        base,
        root / LONG_HELLO,
        version="1.1",
        replacements={
            "hello.c": ('puts("Hello from debflow");', 'puts("Howdy from debflow");'),
            "debian/tests/greets": ('= "Hello from debflow"', '= "Howdy from debflow"'),
            "debian/tests/version-flag": (f"{LONG_HELLO} 1.0", f"{LONG_HELLO} 1.1"),
        },
        changelog="Greet more casually.",
    )
    source = (tree / "hello.c").read_text().replace('#define VERSION "1.0"', '#define VERSION "1.1"')
    (tree / "hello.c").write_text(source)
    return source_package(tree)
