"""Hostile and malformed input: one clear line on stderr, a non-zero exit, and nothing stored (no rows, no
blobs). The table covers the .dsc, the files it lists, the members of its archives, the targets, the size
limits and the lookup commands; concurrent duplicate submissions and an archive that reaches an activity
without `debflow submit` are tested after it."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.debian.dsc import check_dsc
from activities.storage.store import ArtifactStore, NewArtifact
from activities.suites.suite import import_suite
from activities.tools.executors import HostExecutor
from activities.tools.runs import ToolRuns
from activities.uploads.debian_tasks import DebianTasks
from client.api import store_source_package
from models.payloads import BuildInput
from models.tables import Artifact, TaskHistory
from support.synthetic_suite import write_suite
from tests.conftest import row_counts, store_files, subprocess_env
from worker.settings import PROJECT_ROOT, Settings

Damage = Callable[[Path], object]
SQL = "x'; DROP TABLE artifact;--"


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


def rename_listed_file(new_name: str) -> Damage:
    def edit(dsc: Path) -> None:
        edit_dsc(dsc, tarball(dsc).name, new_name)

    return edit


def replace_tarball_with_symlink(dsc: Path) -> None:
    path = tarball(dsc)
    real = path.with_name("elsewhere.bin")
    path.rename(real)
    path.symlink_to(real)


def relist(dsc: Path, path: Path) -> None:
    """Make the .dsc's checksums and sizes match `path` again after its content changed."""
    data = path.read_bytes()
    lines = []
    for line in dsc.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == path.name:
            algorithm = {32: hashlib.md5, 40: hashlib.sha1, 64: hashlib.sha256}[len(parts[0])]
            line = f" {algorithm(data).hexdigest()} {len(data)} {path.name}"
        lines.append(line)
    dsc.write_text("\n".join(lines) + "\n")


def hostile_member(
    configure: Callable[[tarfile.TarInfo], None], name: str = "hello-debflow-1.0/evil"
) -> Damage:
    """Rewrite the source archive with one extra member, and list the new archive in the .dsc."""

    def damage(dsc: Path) -> None:
        path = tarball(dsc)
        with tarfile.open(path, "r:*") as original:
            members = [(m, original.extractfile(m).read() if m.isfile() else None) for m in original]  # type: ignore[union-attr]
        extra = tarfile.TarInfo(name)
        configure(extra)
        members.append((extra, b"x" * extra.size if extra.isfile() else None))
        with tarfile.open(path, "w:xz") as rewritten:
            for member, content in members:
                rewritten.addfile(member, io.BytesIO(content) if content is not None else None)
        relist(dsc, path)

    return damage


def symlink_to(target: str) -> Callable[[tarfile.TarInfo], None]:
    def configure(info: tarfile.TarInfo) -> None:
        info.type, info.linkname = tarfile.SYMTYPE, target

    return configure


def of_type(kind: bytes, size: int = 0) -> Callable[[tarfile.TarInfo], None]:
    def configure(info: tarfile.TarInfo) -> None:
        info.type, info.size = kind, size
        if kind == tarfile.LNKTYPE:
            info.linkname = "../outside"

    return configure


def list_plain_file_only(dsc: Path) -> None:
    notes = dsc.parent / "notes.txt"
    notes.write_text("not an archive\n")
    dsc.write_text(dsc.read_text().replace(tarball(dsc).name, notes.name))
    relist(dsc, notes)


def list_tarball_twice(dsc: Path) -> None:
    text = dsc.read_text()
    line = next(
        line for line in text.split("Checksums-Sha256:\n", 1)[1].splitlines() if tarball(dsc).name in line
    )
    edit_dsc(dsc, line, f"{line}\n{line}")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    message: str  # a part of the one line on stderr
    damage: Damage | None = None
    options: tuple[str, ...] = ()  # after `debflow submit DSC`
    command: tuple[str, ...] = ()  # instead of `submit`: a lookup command
    env: tuple[tuple[str, str], ...] = ()
    submit_as: str | None = None  # submit this file of the upload's directory instead of the .dsc


CASES = [
    # The .dsc itself
    Case("not-a-dsc", "is missing", lambda d: d.rename(d.with_suffix(".txt"))),
    Case("binary-garbage", "it is not UTF-8 text", lambda d: d.write_bytes(b"\x00\xff garbage\n")),
    Case("no-fields", "is not a field", lambda d: d.write_text("just some words\n")),
    Case("only-a-comment", "has no Source field", lambda d: d.write_text("# just a comment\n")),
    Case(
        "no-checksums",
        "has no Checksums-Sha256 field",
        lambda d: d.write_text("Source: x\nVersion: 1\nFormat: 3.0 (native)\n"),
    ),
    Case(
        "second-paragraph",
        "more than one paragraph",
        lambda d: d.write_text(d.read_text() + "\nSource: evil\n"),
    ),
    Case("duplicate-field", "more than once", lambda d: edit_dsc(d, "Format:", "Source: evil\nFormat:")),
    Case("unknown-format", "unknown source format", lambda d: edit_dsc(d, "3.0 (native)", "9.9 (evil)")),
    # Names, versions and fields
    Case(
        "bad-source-name",
        "invalid source package name",
        lambda d: edit_dsc(d, "Source: hello-debflow", "Source: Hello_World"),
    ),
    Case(
        "one-letter-name",
        "invalid source package name",
        lambda d: edit_dsc(d, "Source: hello-debflow", "Source: h"),
    ),
    Case(
        "shell-in-name",
        "invalid source package name",
        lambda d: edit_dsc(d, "Source: hello-debflow", "Source: hello$(id)"),
    ),
    Case("bad-version", "invalid version", lambda d: edit_dsc(d, "Version: 1.0", "Version: 1.0 evil")),
    Case("letter-epoch", "invalid version", lambda d: edit_dsc(d, "Version: 1.0", "Version: a:1.0")),
    Case(
        "version-starts-with-letter",
        "invalid version",
        lambda d: edit_dsc(d, "Version: 1.0", "Version: v1.0"),
    ),
    Case("shell-in-version", "invalid version", lambda d: edit_dsc(d, "Version: 1.0", "Version: 1.0;rm")),
    Case(
        "newline-injection-source",
        "invalid source package name",
        lambda d: edit_dsc(d, "Source: hello-debflow", "Source: hello-debflow\n Architecture: all"),
    ),
    Case(
        "newline-injection-architecture",
        "invalid architecture",
        lambda d: edit_dsc(d, "Architecture: any all", "Architecture: any all\n Testsuite: autopkgtest"),
    ),
    Case(
        "bad-binary-name",
        "invalid binary package name",
        lambda d: edit_dsc(d, "Binary: hello-debflow,", "Binary: Evil_Pkg, hello-debflow,"),
    ),
    # The files the .dsc lists
    Case("checksum-mismatch", "SHA-256 differs from the .dsc", corrupt_same_size),
    Case("size-mismatch", "differs from", lambda d: append_byte(tarball(d))),
    Case("missing-file", "is missing", lambda d: tarball(d).unlink()),
    Case("slash-in-name", "unsafe file name", rename_listed_file("sub/evil.tar.xz")),
    Case("dotdot-in-name", "unsafe file name", rename_listed_file("../evil.tar.xz")),
    Case("absolute-name", "unsafe file name", rename_listed_file("/etc/passwd")),
    Case(
        "option-as-name",
        "unsafe file name",
        lambda d: shutil.copy(d, d.with_name("-rf.dsc")),
        submit_as="-rf.dsc",
    ),
    Case(
        "files-differ-from-sha256",
        "lists other files in Files than in Checksums-Sha256",
        lambda d: edit_dsc(
            d,
            "2636 hello-debflow_1.0.tar.xz\nFiles:",
            f"2636 hello-debflow_1.0.tar.xz\nFiles:\n {'0' * 32} 1 x.tar.xz",
        ),
    ),
    Case(
        "md5-mismatch",
        "MD5 differs from the .dsc",
        lambda d: edit_dsc(d, " 45bdf4baca17a9cec5f47494ddf66988", " " + "0" * 32),
    ),
    Case("symlink", "is not a regular file", replace_tarball_with_symlink),
    Case("listed-twice", "twice", list_tarball_twice),
    Case("no-archive", "does not belong in a 3.0 (native) source package", list_plain_file_only),
    # Members of the source archive
    Case(
        "member-absolute-path",
        "absolute or parent path",
        hostile_member(of_type(tarfile.REGTYPE), "/etc/evil"),
    ),
    Case(
        "member-parent-path", "absolute or parent path", hostile_member(of_type(tarfile.REGTYPE), "../evil")
    ),
    Case("symlink-absolute", "points outside the tree", hostile_member(symlink_to("/etc/shadow"))),
    Case("symlink-escaping", "points outside the tree", hostile_member(symlink_to("../../../etc"))),
    Case("hardlink-escaping", "hard link", hostile_member(of_type(tarfile.LNKTYPE))),
    Case("character-device", "device file or FIFO", hostile_member(of_type(tarfile.CHRTYPE))),
    Case("block-device", "device file or FIFO", hostile_member(of_type(tarfile.BLKTYPE))),
    Case("fifo", "device file or FIFO", hostile_member(of_type(tarfile.FIFOTYPE))),
    # Limits from the settings
    Case("oversized-upload", "larger than the limit", env=(("DEBFLOW_MAX_UPLOAD_BYTES", "2000"),)),
    Case(
        "decompression-bomb",
        "unpacks to more than the limit",
        hostile_member(of_type(tarfile.REGTYPE, size=200_000)),
        env=(("DEBFLOW_MAX_UNPACKED_BYTES", "100000"),),
    ),
    Case(
        "fields-over-json-limit",
        "over the limit of 65536 bytes",
        lambda d: edit_dsc(d, "Format:", f"X-Junk: {'a' * 70_000}\nFormat:"),
    ),
    # Targets
    Case("unknown-arch", "unknown architecture 'pdp11'", options=("--arch", "pdp11")),
    Case("unknown-suite", "unknown suite 'hamm-proposed'", options=("--suite", "hamm-proposed")),
    Case("sql-in-suite", "unknown suite", options=("--suite", SQL)),
    # Look-ups with SQL meta-characters
    Case("report-sql", "no run with workflow id", command=("report", SQL)),
    Case("watch-sql", "no run with workflow id", command=("watch", SQL)),
    Case("retry-sql", "no run with workflow id", command=("retry", SQL)),
    Case("close-sql", "no run with workflow id", command=("close", SQL)),
    Case("rdeps-suite-sql", "unknown suite", command=("rdeps", SQL, "glibc")),
    Case("rdeps-source-sql", "is not in suite", command=("rdeps", "hostile-suite", SQL)),
    Case(
        "rdeps-arch-sql",
        "unknown architecture",
        command=("rdeps", "hostile-suite", "libhostile", "--arch", SQL),
    ),
    Case("campaign-trigger-sql", "invalid source package name", command=("campaign", SQL, "--simulated")),
    Case(
        "campaign-suite-sql",
        "invalid suite name",
        command=("campaign", "glibc", "--simulated", "--suite", SQL),
    ),
]


def debflow(
    args: list[str], settings: Settings, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        env={**subprocess_env(settings), "COLUMNS": "300", **(env or {})},
        cwd=PROJECT_ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def hostile_suite(sessions: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> str:
    """An imported suite, so that look-ups reach the source and architecture checks."""
    sources, packages, release, keyring = write_suite(
        tmp_path_factory.mktemp("hostile-suite"), "libhostile", dependants=2
    )
    import_suite(
        sessions=sessions,
        name="hostile-suite",
        sources=sources,
        packages=[packages],
        release=release,
        keyring=keyring,
    )
    return "hostile-suite"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_and_leaves_nothing(
    case: Case,
    settings: Settings,
    engine: Engine,
    example_sources: dict[str, Path],
    hostile_suite: str,
    tmp_path: Path,
) -> None:
    dsc = copy_upload(example_sources["hello-debflow"], tmp_path / case.id)
    if case.damage is not None:
        case.damage(dsc)
    rows_before, files_before = row_counts(engine), store_files(settings.store_dir)

    target = dsc.with_name(case.submit_as) if case.submit_as else dsc
    args = list(case.command) if case.command else ["submit", str(target), *case.options]
    result = debflow(args, settings, dict(case.env))

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.message in lines[0], lines[0]
    assert row_counts(engine) == rows_before
    assert store_files(settings.store_dir) == files_before


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30


async def test_concurrent_duplicate_submissions_start_one_run(
    client: Client, settings: Settings, engine: Engine, example_sources: dict[str, Path]
) -> None:
    dsc = example_sources["hello-debflow"]
    store_source_package(settings, settings.database_url or "", dsc)  # stored once already: reused below
    rows_before, files_before = row_counts(engine), store_files(settings.store_dir)
    args = ["submit", str(dsc), "--check", "build", "--suite", "trixie"]
    results = await asyncio.gather(*(asyncio.to_thread(debflow, args, settings) for _ in range(3)))

    started = [r for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(started) == 1, [r.stderr for r in results]
    for r in refused:
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "is already being tested" in lines[0], r.stderr
    assert row_counts(engine) == rows_before  # one source artifact, content-addressed: nothing new
    assert store_files(settings.store_dir) == files_before
    workflow_id = re.search(r"started (\S+)", started[0].stdout).group(1)  # type: ignore[union-attr]
    await client.get_workflow_handle(workflow_id).terminate("test over")


def build_without_submit(
    store: ArtifactStore, sessions: sessionmaker[Session], dsc: Path, damage: Damage, work: Path
) -> ApplicationError:
    """Store `dsc` as submit would, damage it afterwards (as `temporal workflow start` may name any
    artifact), run the build activity on it and return its error, after checking it stored nothing."""
    checked = check_dsc(dsc, max_bytes=1 << 30)
    damage(dsc)
    files = {p.name: p for p in dsc.parent.iterdir()}
    (artifact_id,) = store.register(
        [NewArtifact("debian:source-package", checked.data, files, f"unchecked/{uuid.uuid4().hex}")]
    )
    tasks = DebianTasks(
        ToolRuns(
            sessions=sessions,
            store=store,
            executor=HostExecutor(),
            scratch_dir=work,
            heartbeat_interval=1,
            expiration_days=1,
        )
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=f"unchecked-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ApplicationError) as raised:
        env.run(
            tasks.build_package,
            BuildInput(
                upload_artifact_id=artifact_id,
                source="hello-debflow",
                version="1.0",
                suite="bookworm",
                architecture="amd64",
                build_arch_all=True,
            ),
        )
    with sessions() as session:
        assert not session.scalar(
            select(func.count()).select_from(Artifact).where(Artifact.workflow_id == env.info.workflow_id)
        )
        assert not session.scalar(
            select(func.count())
            .select_from(TaskHistory)
            .where(TaskHistory.workflow_id == env.info.workflow_id)
        )
    return raised.value


def test_an_archive_reaching_an_activity_unchecked_is_refused_before_extraction(
    settings: Settings,
    store: ArtifactStore,
    sessions: sessionmaker[Session],
    example_sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    """`temporal workflow start` can name any artifact: the build activity checks the members itself."""
    dsc = copy_upload(example_sources["hello-debflow"], tmp_path / "upload")
    error = build_without_submit(
        store, sessions, dsc, hostile_member(symlink_to("/etc/shadow")), tmp_path / "work"
    )
    assert error.non_retryable and error.type == "BadUpload"
    assert "points outside the tree" in str(error)
    assert not any((tmp_path / "work").iterdir())  # the workspace is gone too
    assert os.path.isdir(tmp_path / "work")
