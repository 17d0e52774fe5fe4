"""The local archive helper: a real pool and indices, which the suite import reads with file locations."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from pathlib import Path

import pytest
from debian import deb822
from sqlalchemy.orm import Session, sessionmaker

from activities.suites.release_signature import release_text
from activities.suites.suite import import_suite, reverse_dependency_targets, source_binaries
from activities.suites.suite_indices import read_indices, verify_release
from client.local_archive import build_local_archive, variant
from models.suite import BINARY_ITEM, SOURCE_ITEM
from worker.settings import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"
HOST = subprocess.run(
    ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
).stdout.strip()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_archive_of_the_examples_is_indexed_with_file_locations(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    archive = build_local_archive(
        tmp_path / "mirror", [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow"]
    )
    root = archive.root
    assert archive.mirror == root.as_uri() and archive.mirror.startswith("file:///")
    assert archive.sources == root / "dists/examples/main/source/Sources"
    assert archive.packages == [root / f"dists/examples/main/binary-{a}/Packages" for a in ("all", HOST)]

    with archive.sources.open() as f:
        sources = {p["Package"]: p for p in deb822.Sources.iter_paragraphs(f, use_apt_pkg=False)}
    assert sources["hello-debflow"]["Directory"] == "pool/main/h/hello-debflow"
    assert sources["greeter-debflow"]["Testsuite"] == "autopkgtest"
    with archive.packages[1].open() as f:
        binaries = {p["Package"]: p for p in deb822.Packages.iter_paragraphs(f, use_apt_pkg=False)}
    # No -dbgsym package; the `all` packages are in binary-<host> too.
    assert sorted(binaries) == ["greeter-debflow", "hello-debflow", "hello-debflow-doc"]
    assert binaries["greeter-debflow"]["Depends"] == "hello-debflow"

    # Signed both ways a Debian mirror is, by a key that only this archive's keyring holds.
    assert archive.release == root / "dists/examples/InRelease"
    verified = release_text(archive.release, archive.keyring)
    assert release_text(root / "dists/examples/Release", archive.keyring) == verified
    indices = read_indices(archive.sources, archive.packages)
    verify_release(archive.release, indices.files, verified.content)
    assert [f.release_path for f in indices.files] == [
        *("main/source/Sources", "main/binary-all/Packages", f"main/binary-{HOST}/Packages"),
    ]
    hello = indices.items["hello-debflow_1.0"].data
    assert hello["directory"] == "pool/main/h/hello-debflow"
    # dpkg-scansources lists the .dsc itself among the files, unlike the .dsc's own Checksums-Sha256.
    assert sorted(f["name"] for f in hello["files"]) == ["hello-debflow_1.0.dsc", "hello-debflow_1.0.tar.xz"]
    binary_names = {f"hello-debflow_1.0_{HOST}", "hello-debflow-doc_1.0_all", "greeter-debflow_1.0_all"}
    assert {n for n, item in indices.items.items() if item.category == BINARY_ITEM} == binary_names
    for item in indices.items.values():
        if item.category == SOURCE_ITEM:
            assert item.data["files"]
            for file in item.data["files"]:
                path = root / item.data["directory"] / file["name"]
                assert (sha256(path), path.stat().st_size) == (file["sha256"], file["size"])
        else:
            path = root / item.data["filename"]
            assert (sha256(path), path.stat().st_size) == (item.data["sha256"], item.data["size"])

    # And the suite import takes it, with greeter-debflow as the reverse dependency of hello-debflow.
    suite = f"local-{uuid.uuid4().hex[:10]}"
    stats = import_suite(
        sessions=sessions,
        name=suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
    )
    assert stats.inserted == 5
    with sessions() as session:
        _, hello_binaries = source_binaries(session=session, suite=suite, source="hello-debflow")
        targets = reverse_dependency_targets(
            session=session, suite=suite, binaries=hello_binaries, architecture=HOST
        )
    assert [(t.source, t.version) for t in targets] == [("greeter-debflow", "1.0")]


def test_variant_changes_files_and_adds_a_changelog_entry(tmp_path: Path) -> None:
    tree = variant(
        EXAMPLES / "hello-debflow",
        tmp_path / "hello-debflow",
        version="1.1",
        replacements={"hello.c": ('puts("Hello from debflow");', 'puts("Howdy from debflow");')},
        changelog="Greet less formally.",
    )
    assert 'puts("Howdy from debflow");' in (tree / "hello.c").read_text()
    assert 'puts("Hello from debflow");' in (EXAMPLES / "hello-debflow" / "hello.c").read_text()
    parsed = subprocess.run(
        ["dpkg-parsechangelog", "-l", str(tree / "debian/changelog"), "--format", "rfc822", "--count", "2"],
        check=True,
        capture_output=True,
        text=True,
    )
    entries = list(deb822.Deb822.iter_paragraphs(parsed.stdout.splitlines()))
    assert [(e["Version"], e["Distribution"], e["Maintainer"]) for e in entries] == [
        ("1.1", "unstable", "debflow developers <debflow@example.org>"),
        ("1.0", "unstable", "debflow developers <debflow@example.org>"),
    ]
    assert entries[0]["Changes"].splitlines()[-1].strip() == "* Greet less formally."
    with pytest.raises(ValueError, match="does not contain 'no such text'"):
        variant(
            EXAMPLES / "hello-debflow",
            tmp_path / "other",
            version="1.1",
            replacements={"hello.c": ("no such text", "")},
            changelog="Nothing.",
        )
