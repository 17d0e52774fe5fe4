"""Valid uploads keep working through the stricter checks: a clear-signed .dsc, 3.0 (quilt) with an extra
orig component, an epoch and ~ and + in the version, wildcard architectures, a path with spaces; a quilt
upload whose patch dpkg-source cannot apply is refused; the build activity applies submit's rules."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from activities.debian.dsc import check_dsc
from activities.storage.store import ArtifactStore
from client.api import check_buildable, store_source_package
from tests.conftest import row_counts
from tests.test_bad_input import build_without_submit, copy_upload, debflow, edit_dsc, relist
from tests.test_dsc_rules import insert_before_format
from worker.settings import PROJECT_ROOT, Settings


def quilt_upload(
    target: Path, version: str = "1:1.0~rc1+dfsg-1", architecture: str = "linux-any all"
) -> Path:
    """A 3.0 (quilt) upload of the example with an extra orig component, built by dpkg-source -b."""
    upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
    tree = target / f"hello-debflow-{upstream}"
    shutil.copytree(PROJECT_ROOT / "examples" / "hello-debflow", tree)
    (tree / "extra").mkdir()
    (tree / "extra" / "README").write_text("an extra upstream component\n")
    (tree / "debian" / "source" / "format").write_text("3.0 (quilt)\n")
    changelog = tree / "debian" / "changelog"
    text = changelog.read_text()
    changelog.write_text(text.replace("hello-debflow (1.0)", f"hello-debflow ({version})", 1))
    control = tree / "debian" / "control"
    control.write_text(
        control.read_text().replace("Architecture: any", f"Architecture: {architecture.split()[0]}", 1)
    )
    orig = target / f"hello-debflow_{upstream}.orig.tar.xz"
    with tarfile.open(orig, "w:xz") as t:
        for path in sorted(tree.rglob("*")):
            relative = path.relative_to(tree)
            if relative.parts[0] not in ("debian", "extra"):
                t.add(path, f"hello-debflow-{upstream}/{relative}", recursive=False)
    with tarfile.open(target / f"hello-debflow_{upstream}.orig-extra.tar.xz", "w:xz") as t:
        t.add(tree / "extra", "extra")
    subprocess.run(["dpkg-source", "-b", tree.name], cwd=target, check=True, capture_output=True)
    (dsc,) = target.glob("*.dsc")
    return dsc


def clear_sign(dsc: Path) -> None:
    """Sign the .dsc with a throw-away key, as a developer's upload is (debflow does not verify it)."""
    home = tempfile.mkdtemp(prefix="gpg-")  # short: gpg-agent's socket path is limited
    env = {**os.environ, "GNUPGHOME": home}
    gpg = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    key = ["--quick-gen-key", "debflow test <t@example.org>", "ed25519", "sign", "1d"]
    try:
        subprocess.run([*gpg, *key], env=env, check=True, capture_output=True)
        signed = f"{dsc}.asc"
        subprocess.run(
            [*gpg, "--clearsign", "--output", signed, str(dsc)], env=env, check=True, capture_output=True
        )
        Path(signed).replace(dsc)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def quilt(tmp_path: Path) -> Path:
    return quilt_upload(tmp_path / "my uploads")  # a path with a space


def test_a_signed_quilt_upload_with_a_component_and_an_epoch_is_stored(
    quilt: Path, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    clear_sign(quilt)
    assert quilt.read_text().startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    rows_before = row_counts(engine)
    _, source, version = store_source_package(settings, settings.database_url or "", quilt, ["amd64"])
    assert (source, version) == ("hello-debflow", "1:1.0~rc1+dfsg-1")
    assert row_counts(engine)["artifact"] == rows_before["artifact"] + 1
    checked = check_dsc(quilt, max_bytes=1 << 30)
    assert checked.data.format == "3.0 (quilt)" and checked.data.architecture == ["linux-any", "all"]
    assert sorted(checked.files) == sorted(
        [
            quilt.name,
            "hello-debflow_1.0~rc1+dfsg.orig.tar.xz",
            "hello-debflow_1.0~rc1+dfsg.orig-extra.tar.xz",
            "hello-debflow_1.0~rc1+dfsg-1.debian.tar.xz",
        ]
    )


def test_a_quilt_upload_whose_patch_does_not_apply_is_refused_by_dpkg_source(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    dsc = quilt_upload(tmp_path / "up", version="1.0-1", architecture="any all")
    debian = next(tmp_path.glob("up/*.debian.tar.xz"))
    raw = io.BytesIO()
    with tarfile.open(debian, "r:xz") as original, tarfile.open(fileobj=raw, mode="w") as rewritten:
        for member in original:
            rewritten.addfile(member, original.extractfile(member) if member.isfile() else None)
        for name, content in (
            ("debian/patches/series", b"broken.patch\n"),
            (
                "debian/patches/broken.patch",
                b"--- a/hello.c\n+++ b/hello.c\n@@ -1,1 +1,1 @@\n-no such line\n+x\n",
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            rewritten.addfile(info, io.BytesIO(content))
    debian.write_bytes(
        subprocess.run(["xz", "-c"], input=raw.getvalue(), capture_output=True, check=True).stdout
    )
    relist(dsc, debian)
    rows_before = row_counts(engine)
    result = debflow(["submit", str(dsc), "--check", "build"], settings)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "dpkg-source -x refuses it" in lines[0], lines[0]
    assert row_counts(engine) == rows_before


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Version: 1.0", "Version\t: 1.0"),  # whitespace before the colon, once: dpkg's `Version`
        ("Format:", "# a comment line, skipped as dpkg skips it\nFormat:"),
        ("Architecture: any all", "Architecture: any-amd64"),
        ("Architecture: any all", "Architecture: linux-any"),
        ("Architecture: any all", "Architecture: armhf all"),  # arch:all is built with the first
        ("Architecture: any all", "Architecture: amd64 arm64"),
    ],
)
def test_valid_variants_are_accepted(
    old: str, new: str, example_sources: dict[str, Path], tmp_path: Path
) -> None:
    dsc = copy_upload(example_sources["hello-debflow"], tmp_path / "upload dir")
    edit_dsc(dsc, old, new)
    checked = check_dsc(dsc, max_bytes=1 << 30, extract_in=tmp_path / "scratch")
    assert checked.data.version == "1.0"
    check_buildable(dsc.name, checked.data.architecture, ["amd64"])
    assert not any((tmp_path / "scratch").iterdir())  # dpkg-source's tree is gone again


def test_the_build_activity_applies_the_same_rules(
    settings: Settings,
    store: ArtifactStore,
    sessions: sessionmaker[Session],
    example_sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    """An artifact stored without `debflow submit` (a field repeated as dpkg reads it) is refused."""
    dsc = copy_upload(example_sources["hello-debflow"], tmp_path / "upload")
    error = build_without_submit(
        store, sessions, dsc, insert_before_format("Version : 9.9"), tmp_path / "work"
    )
    assert error.non_retryable and error.type == "BadUpload"
    assert "'Version' more than once" in str(error)
