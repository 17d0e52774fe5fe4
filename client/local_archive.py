"""A real, small Debian archive (pool, Sources, Packages, signed Release) built from source trees: the demo's
suite and the tests' (`debflow import-suite` reads it through a file:// mirror), and a second suite with
hello-debflow 1.1 that pins take packages from (`build_second_suite`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from client.archive_signing import sign_release
from worker.settings import PROJECT_ROOT

# noautodbgsym: -dbgsym packages belong to Debian's separate debug archive, not to the suite.
BUILD_ENV = {"LC_ALL": "C.UTF-8", "DEB_BUILD_OPTIONS": "parallel=2 noautodbgsym"}


@dataclass(frozen=True)
class LocalArchive:
    """One suite of a mirror on disk: `root` holds pool/ and dists/<suite>/, as on a Debian mirror;
    `release` is the InRelease, signed by a throwaway key whose public part is `keyring`."""

    root: Path
    suite: str
    sources: Path
    packages: list[Path]
    release: Path
    keyring: Path

    @property
    def mirror(self) -> str:
        return self.root.as_uri()


def run(args: Sequence[str | Path], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run a tool, return its stdout; on failure raise with its stderr (and stdout: dpkg-buildpackage)."""
    command = [str(a) for a in args]
    try:
        completed = subprocess.run(
            command, cwd=cwd, env={**os.environ, **(env or {})}, check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as e:
        raise RuntimeError(
            f"{' '.join(command)} failed in {cwd} (exit {e.returncode}):\n{e.stderr}\n{e.stdout[-4000:]}"
        ) from None
    return completed.stdout


def pool_directory(source: str) -> str:
    """pool/main/h/hello, pool/main/libf/libfoo: Debian's layout, libraries by their first four letters."""
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[0]
    return f"pool/main/{prefix}/{source}"


def build_local_archive(root: Path, trees: Sequence[Path], *, suite: str = "examples") -> LocalArchive:
    """Build each tree (source and binaries) into root/pool and index it all as one suite."""
    root = root.resolve()
    with tempfile.TemporaryDirectory(prefix="debflow-archive-") as scratch:
        for i, tree in enumerate(trees):
            # dpkg-buildpackage writes its results next to the tree: one directory per tree keeps them apart.
            out = Path(scratch) / str(i)
            shutil.copytree(tree, out / tree.name, symlinks=True)
            run(["dpkg-buildpackage", "-us", "-uc"], out / tree.name, BUILD_ENV)
            dsc = next(out.glob("*.dsc"))
            pool = root / pool_directory(dsc.name.split("_")[0])
            pool.mkdir(parents=True, exist_ok=True)
            for built in out.iterdir():
                if built.is_file() and built.suffix not in (".changes", ".buildinfo"):
                    shutil.move(built, pool / built.name)
    dists = root / "dists" / suite / "main"
    sources = dists / "source" / "Sources"
    sources.parent.mkdir(parents=True, exist_ok=True)
    # Run from the root, so that Directory and Filename are relative to the mirror root.
    sources.write_text(run(["dpkg-scansources", "pool"], root))
    architectures = sorted({deb.stem.rsplit("_", 1)[1] for deb in (root / "pool").rglob("*.deb")})
    packages = []
    for architecture in architectures:
        # --arch <arch> also takes the `all` packages, as binary-<arch>/Packages does since bookworm.
        path = dists / f"binary-{architecture}" / "Packages"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run(["dpkg-scanpackages", "--arch", architecture, "pool"], root))
        packages.append(path)
    release = write_release(root / "dists" / suite, architectures)
    # A key made for this archive alone: nothing else can be signed with it, and it is gone afterwards.
    keyring = root / "keyring.gpg"
    in_release = sign_release(release, keyring)
    return LocalArchive(root, suite, sources, packages, in_release, keyring)


def write_release(dist: Path, architectures: Sequence[str]) -> Path:
    """A Release (unsigned: see sign_release) listing the SHA-256 of every index under `dist`."""
    lines = [
        f" {hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_size} {p.relative_to(dist)}"
        for p in sorted(dist.rglob("*"))
        if p.is_file() and p.name not in ("Release", "Release.gpg", "InRelease")
    ]
    fields = [
        f"Suite: {dist.name}",
        f"Codename: {dist.name}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Architectures: {' '.join(a for a in architectures if a != 'all')}",
        "Components: main",
        "SHA256:",
        *lines,
    ]
    release = dist / "Release"
    release.write_text("\n".join(fields) + "\n")
    return release


def variant(
    tree: Path, dest: Path, *, version: str, replacements: Mapping[str, tuple[str, str]], changelog: str
) -> Path:
    """A copy of `tree` at `dest` with text replaced in files (relative path -> (old, new)) and a new
    debian/changelog entry for `version` saying `changelog`."""
    shutil.copytree(tree, dest, symlinks=True)
    for relative, (old, new) in replacements.items():
        path = dest / relative
        text = path.read_text()
        if old not in text:
            raise ValueError(f"{tree / relative} does not contain {old!r}")
        path.write_text(text.replace(old, new))
    entries = (dest / "debian" / "changelog").read_text()
    # Keep the name, distribution and maintainer of the newest entry.
    first = entries.split("\n", 1)[0]
    source = first.split(" ", 1)[0]
    distribution = first.split(")", 1)[1].split(";", 1)[0].strip()
    maintainer = next(line for line in entries.splitlines() if line.startswith(" -- ")).split("  ")[0]
    entry = (
        f"{source} ({version}) {distribution}; urgency=medium\n\n  * {changelog}\n\n"
        f"{maintainer}  {format_datetime(datetime.now(UTC))}\n\n"
    )
    (dest / "debian" / "changelog").write_text(entry + entries)
    return dest


# The second suite of the tests and the demo: newer versions, as `unstable` is to `testing`.
SECOND_SUITE = "debflow-unstable"


def hello_1_1_tree(root: Path) -> Path:
    """The source tree of hello-debflow 1.1, made in `root`. It greets differently and updates its own
    tests; greeter-debflow relays the greeting verbatim and tests it, so this version passes its own
    tests and regresses its reverse dependency."""
    tree = variant(
        PROJECT_ROOT / "examples" / "hello-debflow",
        root / "hello-debflow",
        version="1.1",
        replacements={
            "hello.c": ('puts("Hello from debflow");', 'puts("Howdy from debflow");'),
            "debian/tests/greets": ('= "Hello from debflow"', '= "Howdy from debflow"'),
            "debian/tests/version-flag": ("hello-debflow 1.0", "hello-debflow 1.1"),
        },
        changelog="Greet more casually.",
    )
    # The program's --version comes from hello.c's default unless the build defines it.
    source = (tree / "hello.c").read_text().replace('#define VERSION "1.0"', '#define VERSION "1.1"')
    (tree / "hello.c").write_text(source)
    return tree


def hello_with_a_new_greeting(root: Path) -> Path:
    """The .dsc of hello-debflow 1.1 (hello_1_1_tree), made in `root`: the upload of the demo and tests."""
    tree = hello_1_1_tree(root)
    run(["dpkg-source", "-b", tree.name], root)
    return root / "hello-debflow_1.1.dsc"


def build_second_suite(root: Path, *, suite: str = SECOND_SUITE, trees: Sequence[Path] = ()) -> LocalArchive:
    """A second suite in its own signed archive at `root`: hello-debflow 1.1 built (and `trees`), what a
    pin such as [["src:hello-debflow", SUITE]] takes from it while the rest comes from the first suite."""
    with tempfile.TemporaryDirectory(prefix="debflow-second-suite-") as scratch:
        return build_local_archive(root, [hello_1_1_tree(Path(scratch)), *trees], suite=suite)
