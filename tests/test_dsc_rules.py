"""The .dsc read the way dpkg reads it, archives checked in the tree dpkg-source lays out, the file set each
format allows, one line for every malformed field, nothing-to-build refused, the member limit — each
refused by `debflow submit` with one line, exit 2, nothing stored and no workflow started (valid uploads:
tests/test_valid_uploads.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import Client

from tests.conftest import row_counts, store_files
from tests.test_bad_input import copy_upload, debflow, edit_dsc, relist, symlink_to, tarball
from worker.settings import Settings

Damage = Callable[[Path], object]
TOP = "hello-debflow"  # the top directory of the example's tarball
SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
SIGNATURE = "-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"


def rewrite(dsc: Path, change: Callable[[bytes], bytes]) -> None:
    dsc.write_bytes(change(dsc.read_bytes()))


def replace_bytes(old: bytes, new: bytes) -> Damage:
    def damage(dsc: Path) -> None:
        data = dsc.read_bytes()
        assert old in data, old
        dsc.write_bytes(data.replace(old, new, 1))

    return damage


def insert_before_format(line: str) -> Damage:
    return lambda d: edit_dsc(d, "Format:", f"{line}\nFormat:")


def list_names(source_format: str, names: list[str]) -> Damage:
    """List `names` (plausible checksums, files need not exist: the file set is judged first)."""

    def damage(dsc: Path) -> None:
        text = dsc.read_text().split("Checksums-Sha1:")[0].replace("3.0 (native)", source_format)
        for field, length in (("Checksums-Sha1", 40), ("Checksums-Sha256", 64), ("Files", 32)):
            text += f"{field}:\n" + "".join(f" {'a' * length} 10 {n}\n" for n in names)
        dsc.write_text(text)

    return damage


def checksum_line(old_tail: str, new_tail: str, field_digest: str) -> Damage:
    """Change the end of the tarball's line in one checksum field (found by its digest's length)."""

    def damage(dsc: Path) -> None:
        lines = dsc.read_text().split("\n")
        for i, line in enumerate(lines):
            parts = line.split()
            if len(parts) == 3 and len(parts[0]) == len(field_digest) and line.endswith(old_tail):
                lines[i] = line.replace(old_tail, new_tail)
        dsc.write_text("\n".join(lines))

    return damage


def with_members(*extra: tuple[str, Callable[[tarfile.TarInfo], None]]) -> Damage:
    """Rewrite the tarball with extra members after the original ones, and list it again."""

    def damage(dsc: Path) -> None:
        path = tarball(dsc)
        with tarfile.open(path, "r:*") as original:
            members = [(m, original.extractfile(m).read() if m.isfile() else None) for m in original]  # type: ignore[union-attr]
        for name, configure in extra:
            info = tarfile.TarInfo(name)
            configure(info)
            members.append((info, b"" if info.isfile() else None))
        with tarfile.open(path, "w:xz") as rewritten:
            for member, content in members:
                rewritten.addfile(member, io.BytesIO(content) if content is not None else None)
        relist(dsc, path)

    return damage


def hard(target: str) -> Callable[[tarfile.TarInfo], None]:
    def configure(info: tarfile.TarInfo) -> None:
        info.type, info.linkname = tarfile.LNKTYPE, target

    return configure


def regular(info: tarfile.TarInfo) -> None:
    info.type = tarfile.REGTYPE


def corrupt_header_hides(name: str, target: str) -> Damage:
    """An archive with a broken header before an escaping link: Python's tarfile stops at the broken
    header, GNU tar skips it and would extract the link."""

    def damage(dsc: Path) -> None:
        path = tarball(dsc)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
            for member_name, content in ((f"{TOP}/a", b"a" * 10), (f"{TOP}/b", b"b" * 10)):
                info = tarfile.TarInfo(member_name)
                info.size = len(content)
                t.addfile(info, io.BytesIO(content))
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            t.addfile(link)
        data = bytearray(raw.getvalue())
        data[512 * 2 + 148 : 512 * 2 + 156] = b"0000000\0"  # the second header's checksum
        path.write_bytes(
            subprocess.run(["xz", "-c"], input=bytes(data), capture_output=True, check=True).stdout
        )
        relist(dsc, path)

    return damage


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    message: str
    damage: Damage | None = None
    options: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


TARBALL = "hello-debflow_1.0.tar.xz"
CASES = [
    # Class 2: the .dsc as dpkg reads it
    Case("dup-space-before-colon", "more than once", insert_before_format("Version : 9.9")),
    Case("dup-tab-before-colon", "more than once", insert_before_format("Source\t: evil")),
    Case("dup-lower-case", "more than once", insert_before_format("source: evil")),
    Case("dup-upper-case", "more than once", insert_before_format("VERSION: 9.9")),
    Case("u2028-smuggles-field", "U+2028", replace_bytes(b"any all", "any all\u2028Version: 9".encode())),
    Case("u0085-smuggles-field", "U+0085", replace_bytes(b"any all", "any all\u0085Version: 9".encode())),
    Case("file-separator", "U+001C", replace_bytes(b"any all", b"any all\x1cVersion: 9")),
    Case("record-separator", "U+001E", replace_bytes(b"any all", b"any all\x1eVersion: 9")),
    Case("vertical-tab", "U+000B", replace_bytes(b"any all", b"any all\x0bVersion: 9")),
    Case("carriage-return", "U+000D", replace_bytes(b"any all", b"any all\rVersion: 9")),
    Case(
        "armour-without-signature", "no signature block", lambda d: rewrite(d, lambda b: SIGNED.encode() + b)
    ),
    Case(
        "paragraph-after-signature",
        "text after its OpenPGP signature",
        lambda d: rewrite(d, lambda b: SIGNED.encode() + b + SIGNATURE.encode() + b"\nSource: evil\n"),
    ),
    Case(
        "unfinished-signature",
        "unfinished",
        lambda d: rewrite(d, lambda b: SIGNED.encode() + b + b"-----BEGIN PGP SIGNATURE-----\n\nabc\n"),
    ),
    Case(
        "armour-inside-paragraph",
        "not allowed here",
        lambda d: edit_dsc(d, "Source:", "-----BEGIN PGP SIGNED MESSAGE-----\nSource:"),
    ),
    Case(
        "dash-escaped-line",
        "is not a field",
        lambda d: rewrite(
            d, lambda b: SIGNED.encode() + b.replace(b"Format:", b"- Format:") + SIGNATURE.encode()
        ),
    ),
    Case("hyphen-field-name", "invalid field name", insert_before_format("-Evil: yes")),
    Case("non-ascii-field-name", "invalid field name", insert_before_format("Évil: yes")),
    Case("line-without-colon", "is not a field", insert_before_format("no colon here")),
    Case("empty-field-name", "is not a field", insert_before_format(": value")),
    Case(
        "continuation-first",
        "continuation line outside a field",
        lambda d: rewrite(d, lambda b: b" stray\n" + b),
    ),
    Case(
        "whitespace-line-ends-paragraph",
        "more than one paragraph",
        lambda d: edit_dsc(d, "Checksums-Sha1:", " \t\nChecksums-Sha1:"),
    ),
    Case("no-files-field", "has no Files field", lambda d: edit_dsc(d, "Files:", "X-Files:")),
    # Class 4: what dpkg-source refuses about the version and the file set
    Case(
        "empty-debian-revision",
        "Debian revision is empty",
        lambda d: edit_dsc(d, "Version: 1.0", "Version: 1.0-"),
    ),
    Case("epoch-without-version", "invalid version", lambda d: edit_dsc(d, "Version: 1.0", "Version: 1:")),
    Case(
        "quilt-without-debian-tarball",
        "needs hello-debflow_1.0.debian.tar",
        list_names("3.0 (quilt)", ["hello-debflow_1.0.orig.tar.xz"]),
    ),
    Case(
        "quilt-without-orig",
        "needs hello-debflow_1.0.orig.tar",
        list_names("3.0 (quilt)", ["hello-debflow_1.0.debian.tar.xz"]),
    ),
    Case(
        "native-with-orig",
        "does not belong in a 3.0 (native)",
        list_names("3.0 (native)", ["hello-debflow_1.0.orig.tar.xz", "hello-debflow_1.0.tar.xz"]),
    ),
    Case(
        "native-tarball-of-other-version",
        "does not belong in a 3.0 (native)",
        list_names("3.0 (native)", ["hello-debflow_0.9.tar.xz"]),
    ),
    Case(
        "quilt-two-compressions",
        "twice (two compressions)",
        list_names(
            "3.0 (quilt)",
            [
                "hello-debflow_1.0.orig.tar.xz",
                "hello-debflow_1.0.orig.tar.gz",
                "hello-debflow_1.0.debian.tar.xz",
            ],
        ),
    ),
    Case(
        "quilt-signature-without-tarball",
        "signs a tarball the .dsc does not list",
        list_names(
            "3.0 (quilt)",
            [
                "hello-debflow_1.0.orig.tar.xz",
                "hello-debflow_1.0.orig-extra.tar.xz.asc",
                "hello-debflow_1.0.debian.tar.xz",
            ],
        ),
    ),
    Case("format-1.0-with-xz", "does not belong in a 1.0", lambda d: edit_dsc(d, "3.0 (native)", "1.0")),
    # Class 5: one line, not a traceback
    Case("nul-in-field", "NUL byte", replace_bytes(b"debflow developers", b"debflow\0developers")),
    Case(
        "size-not-a-number",
        "invalid line in Files",
        checksum_line(f"2636 {TARBALL}", f"26x6 {TARBALL}", "0" * 32),
    ),
    Case(
        "checksum-missing-size",
        "invalid line in Checksums-Sha256",
        checksum_line(f" 2636 {TARBALL}", f" {TARBALL}", "0" * 64),
    ),
    Case(
        "checksum-extra-token",
        "invalid line in Checksums-Sha1",
        checksum_line(TARBALL, f"{TARBALL} x", "0" * 40),
    ),
    Case(
        "size-of-5000-digits",
        "invalid line in Files",
        checksum_line(f" 2636 {TARBALL}", f" {'9' * 5000} {TARBALL}", "0" * 32),
    ),
    Case(
        "upper-case-checksum",
        "invalid line in Files",
        lambda d: edit_dsc(d, "45bdf4baca17a9cec5f47494ddf66988", "45BDF4BACA17A9CEC5F47494DDF66988"),
    ),
    Case(
        "file-name-over-name-max",
        "longer than 255 bytes",
        lambda d: edit_dsc(d, TARBALL, "hello-debflow_1.0" + "a" * 300 + ".tar.xz"),
    ),
    # Class 3: archives checked in the tree dpkg-source makes
    Case(
        "link-escapes-after-top-is-stripped",
        "points outside the tree",
        with_members((f"{TOP}/evil", symlink_to("../x"))),
    ),
    Case(
        "link-chain-escapes",
        "points outside the tree",
        with_members((f"{TOP}/here", symlink_to(".")), (f"{TOP}/evil", symlink_to("here/.."))),
    ),
    Case(
        "link-chain-escapes-defined-later",
        "points outside the tree",
        with_members((f"{TOP}/evil", symlink_to("here/..")), (f"{TOP}/here", symlink_to("."))),
    ),
    Case(
        "link-through-nested-link",
        "points outside the tree",
        with_members((f"{TOP}/debian/up", symlink_to("..")), (f"{TOP}/evil", symlink_to("debian/up/.."))),
    ),
    Case(
        "hard-link-through-symlink",
        "through a symbolic link",
        with_members((f"{TOP}/d", symlink_to("debian")), (f"{TOP}/h", hard(f"{TOP}/d/rules"))),
    ),
    Case(
        "hard-link-to-symlink",
        "does not point to an earlier regular file",
        with_members(
            (f"{TOP}/debian/l", symlink_to("../GREETING.txt")), (f"{TOP}/h", hard(f"{TOP}/debian/l"))
        ),
    ),
    Case(
        "member-written-through-symlink",
        "written through the symbolic link",
        with_members((f"{TOP}/d", symlink_to("debian")), (f"{TOP}/d/evil", regular)),
    ),
    Case(
        "corrupt-header-hides-members",
        "GNU tar reads the archive differently",
        corrupt_header_hides(f"{TOP}/evil", "/etc"),
    ),
    # Class 7: the member limit
    Case(
        "too-many-members",
        "more than the limit of 5 archive members",
        env=(("DEBFLOW_MAX_ARCHIVE_MEMBERS", "5"),),
    ),
    # Class 6: nothing to build
    Case(
        "empty-architecture",
        "Architecture field is empty",
        lambda d: edit_dsc(d, "Architecture: any all", "Architecture:"),
    ),
    Case(
        "no-architecture-field",
        "Architecture field is empty",
        lambda d: edit_dsc(d, "Architecture: any all\n", ""),
    ),
    Case("armhf-only-for-amd64", "builds nothing for amd64", lambda d: edit_dsc(d, "any all", "armhf")),
    Case("any-arm64-for-amd64", "builds nothing for amd64", lambda d: edit_dsc(d, "any all", "any-arm64")),
    Case(
        "kfreebsd-any-for-amd64", "builds nothing for amd64", lambda d: edit_dsc(d, "any all", "kfreebsd-any")
    ),
    Case(
        "amd64-only-for-arm64",
        "builds nothing for arm64",
        lambda d: edit_dsc(d, "any all", "amd64"),
        options=("--arch", "arm64"),
    ),
    # gnu-linux-any is no longer refused: submissions and runs judge wildcards with the same rule
    # (models/architectures.py; tests/test_pipeline_tasks.py), so what dpkg builds is built.
    Case(
        "gnu-wildcard-for-arm64-only",
        "builds nothing for amd64",
        lambda d: edit_dsc(d, "any all", "any-arm64 gnu-any-arm64"),
    ),
]


async def _upload_runs(client: Client) -> int:
    return (await client.count_workflows("WorkflowType = 'UploadPipelineWorkflow'")).count


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_refused_with_one_line_and_nothing_stored(
    case: Case,
    client: Client,
    settings: Settings,
    engine: Engine,
    example_sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    dsc = copy_upload(example_sources["hello-debflow"], tmp_path / case.id)
    if case.damage is not None:
        case.damage(dsc)
    rows_before, files_before = row_counts(engine), store_files(settings.store_dir)
    runs_before = await _upload_runs(client)

    args = ["submit", str(dsc), "--check", "build", *case.options]
    result = await asyncio.to_thread(debflow, args, settings, dict(case.env))

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.message in lines[0], lines[0]
    assert row_counts(engine) == rows_before
    assert store_files(settings.store_dir) == files_before
    assert await _upload_runs(client) == runs_before


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
