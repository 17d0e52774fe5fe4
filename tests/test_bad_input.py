"""Bad uploads: one clear line on stderr, a non-zero exit, and nothing stored (no rows, no blobs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.conftest import row_counts, store_files, subprocess_env
from worker.settings import Settings


def copy_upload(source_dsc: Path, target: Path) -> Path:
    """A private copy of an example upload (the .dsc and the files beside it)."""
    target.mkdir(parents=True, exist_ok=True)
    stem = source_dsc.name.removesuffix(".dsc")
    for path in source_dsc.parent.glob(f"{stem}*"):
        shutil.copy(path, target / path.name)
    return target / source_dsc.name


def edit_dsc(dsc: Path, old: str, new: str) -> None:
    text = dsc.read_text()
    assert old in text, old
    dsc.write_text(text.replace(old, new))


def tarball(dsc: Path) -> Path:
    return next(dsc.parent.glob("*.tar.*"))


def corrupt_same_size(dsc: Path) -> None:
    path = tarball(dsc)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def append_byte(path: Path) -> None:
    with path.open("ab") as f:
        f.write(b"x")


def rename_listed_file(new_name: str) -> Callable[[Path], None]:
    def edit(dsc: Path) -> None:
        edit_dsc(dsc, tarball(dsc).name, new_name)

    return edit


def replace_tarball_with_symlink(dsc: Path) -> None:
    path = tarball(dsc)
    real = path.with_name("elsewhere.bin")
    path.rename(real)
    path.symlink_to(real)


CASES: list[tuple[str, Callable[[Path], None] | None, list[str], str]] = [
    ("not-a-dsc", lambda d: d.rename(d.with_suffix(".txt")), [], "is missing"),
    ("binary-garbage", lambda d: d.write_bytes(b"\x00\xff garbage\n"), [], "it is not UTF-8 text"),
    ("no-fields", lambda d: d.write_text("just some words\n"), [], "has no Source field"),
    (
        "no-checksums",
        lambda d: d.write_text("Source: x\nVersion: 1\nFormat: 3.0 (native)\n"),
        [],
        "has no Checksums-Sha256 field",
    ),
    ("checksum-mismatch", corrupt_same_size, [], "SHA-256 differs from the .dsc"),
    ("size-mismatch", lambda d: append_byte(tarball(d)), [], "differs from"),
    ("missing-file", lambda d: tarball(d).unlink(), [], "is missing"),
    ("slash-in-name", rename_listed_file("sub/evil.tar.xz"), [], "unsafe file name"),
    ("dotdot-in-name", rename_listed_file("../evil.tar.xz"), [], "unsafe file name"),
    ("symlink", replace_tarball_with_symlink, [], "is not a regular file"),
    (
        "bad-source-name",
        lambda d: edit_dsc(d, "Source: hello-debflow", "Source: Hello_World"),
        [],
        "invalid source package name",
    ),
    ("bad-version", lambda d: edit_dsc(d, "Version: 1.0", "Version: 1.0 evil"), [], "invalid version"),
    ("unknown-arch", None, ["--arch", "pdp11"], "unknown architecture 'pdp11'"),
    ("unknown-suite", None, ["--suite", "hamm-proposed"], "unknown suite 'hamm-proposed'"),
]


@pytest.mark.parametrize(("case", "damage", "options", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_upload_is_refused_and_leaves_nothing(
    case: str,
    damage: Callable[[Path], None] | None,
    options: list[str],
    message: str,
    settings: Settings,
    engine: Engine,
    example_sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    dsc = copy_upload(example_sources["hello-debflow"], tmp_path / case)
    if damage is not None:
        damage(dsc)
    rows_before, files_before = row_counts(engine), store_files(settings.store_dir)

    result = subprocess.run(
        [sys.executable, "-m", "client", "submit", str(dsc), *options],
        capture_output=True,
        text=True,
        env={**subprocess_env(settings), "COLUMNS": "300"},
        cwd=os.path.dirname(os.path.dirname(__file__)),
        timeout=120,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert row_counts(engine) == rows_before
    assert store_files(settings.store_dir) == files_before
