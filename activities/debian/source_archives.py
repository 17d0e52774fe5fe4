"""Checking a source package's archives for what extraction could abuse, before anything is extracted, and
the tree dpkg-source made, after.

The members are checked in the tree dpkg-source lays out, not in each archive alone: an archive whose members
share one top directory is unpacked without it (Dpkg::Source::Archive), an `orig-COMPONENT` tarball lands in
COMPONENT/, a `debian` tarball is unpacked in place over the rest. Symbolic links are followed through that
tree, link by link, as the kernel will follow them. Each archive is read twice, by Python's tarfile and by
GNU tar (which dpkg-source runs): an archive the two read differently is refused, since what we checked
would not be what is extracted.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from activities.debian.bad_upload import BadUpload
from activities.tools.process import require_tool

ARCHIVE = re.compile(r"\.tar(\.(gz|xz|bz2|lzma))?$")
ADDON = re.compile(r"\.orig-([A-Za-z0-9-]+)\.tar(\.(gz|xz|bz2|lzma))?$")
DEBIAN = re.compile(r"\.debian\.tar(\.(gz|xz|bz2|lzma))?$")
MAX_LINK_HOPS = 40  # Linux's limit on symbolic links followed in one path lookup
DEFAULT_MAX_MEMBERS = 1_000_000
C_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 0x5C: "\\\\"}

Parts = tuple[str, ...]


@dataclass(frozen=True)
class Member:
    name: str
    kind: str  # dir, file, sym or hard
    link: str
    size: int


def _parts(name: str) -> Parts:
    return tuple(p for p in name.split("/") if p not in ("", "."))


def _tar_escape(raw: bytes) -> str:
    """A name as `LC_ALL=C tar -t --quoting-style=escape` prints it."""
    return "".join(C_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in raw)


def read_members(path: Path, *, max_members: int, max_unpacked_bytes: int) -> list[Member]:
    """The members of one archive, refusing unsafe names and types and the limits as it reads."""
    members: list[Member] = []
    total = 0
    try:
        # Streaming mode reads the archive once, front to back, whatever its compression.
        with tarfile.open(path, mode="r|*") as archive:
            for info in archive:
                name = info.name
                if len(members) >= max_members:
                    raise BadUpload(f"{path.name}: more than the limit of {max_members} archive members")
                if name.startswith("/") or ".." in name.split("/"):
                    raise BadUpload(f"{path.name}: member {name!r} has an absolute or parent path")
                if info.ischr() or info.isblk() or info.isfifo():
                    raise BadUpload(f"{path.name}: member {name!r} is a device file or FIFO")
                if info.issym():
                    kind = "sym"
                elif info.islnk():
                    kind = "hard"
                elif info.isdir():
                    kind = "dir"
                elif info.isfile():
                    kind = "file"
                else:
                    raise BadUpload(f"{path.name}: member {name!r} is not a file, directory or link")
                total += info.size
                if total > max_unpacked_bytes:
                    raise BadUpload(
                        f"{path.name}: unpacks to more than the limit of {max_unpacked_bytes} bytes"
                    )
                members.append(Member(name, kind, info.linkname, info.size))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BadUpload(f"{path.name} cannot be read as a tar archive: {e}") from None
    _compare_with_gnu_tar(path, members, max_members)
    return members


# How long GNU tar may take to list an archive whose members Python has already listed.
LIST_TIMEOUT_S = 600


def _compare_with_gnu_tar(path: Path, members: list[Member], max_members: int) -> None:
    """Refuse the archive unless GNU tar lists the same members, in the same order, without error (a
    corrupt header ends tarfile's listing early, where GNU tar skips it and goes on)."""
    require_tool("tar", "tar")
    env = {k: v for k, v in os.environ.items() if k != "TAR_OPTIONS"} | {"LC_ALL": "C"}
    expected = [_tar_escape(m.name.encode("utf-8", "surrogateescape")) for m in members]
    # stderr goes to a file: a pipe nobody reads while stdout is read can fill and stall tar.
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(
            ["tar", "-t", "--quoting-style=escape", "-f", str(path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
        ) as tar,
    ):
        assert tar.stdout is not None
        # A hostile archive must not keep a submit busy for ever.
        timer = threading.Timer(LIST_TIMEOUT_S, tar.kill)
        timer.start()
        try:
            listed = 0
            same = True
            for line in tar.stdout:
                name = line.decode("ascii", "replace").rstrip("\n").rstrip("/")
                if listed >= len(expected) or name != expected[listed].rstrip("/"):
                    same = False
                    break
                listed += 1
            if not same:
                tar.kill()
            tar.wait()
        finally:
            timer.cancel()
        stderr.seek(0)
        errors = stderr.read(4096).decode(errors="replace").strip()
    if not same or listed != len(expected) or tar.returncode != 0:
        why = errors.splitlines()[0] if errors else "it lists other members than Python's tarfile"
        raise BadUpload(f"{path.name}: GNU tar reads the archive differently ({why})")


class _Tree:
    """The tree dpkg-source will make, as paths → (kind, link target)."""

    def __init__(self, archive: str) -> None:
        self.nodes: dict[Parts, tuple[str, str]] = {}
        self.archive = archive

    def remove(self, top: Parts) -> None:
        """dpkg-source removes debian/ and each addon's directory before unpacking their tarballs."""
        for key in [k for k in self.nodes if k[: len(top)] == top]:
            del self.nodes[key]

    def symlink_above(self, parts: Parts) -> Parts | None:
        for end in range(1, len(parts)):
            node = self.nodes.get(parts[:end])
            if node and node[0] == "sym":
                return parts[:end]
        return None

    def resolve(self, parts: Iterable[str]) -> Parts | None:
        """Follow every symbolic link along `parts` (the last one included); None if the path leaves the
        tree. Missing components are taken as they are (a dangling link is harmless)."""
        todo, out, hops = list(parts), list[str](), 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if not out:
                    return None
                out.pop()
                continue
            node = self.nodes.get((*out, part))
            if node and node[0] == "sym":
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise BadUpload(f"{self.archive}: symbolic link {'/'.join((*out, part))!r} is a loop")
                if node[1].startswith("/"):
                    return None
                todo = [*_parts(node[1]), *todo]
                continue
            out.append(part)
        return tuple(out)


def _layout(members: list[Member], prefix: Parts, strip_single_top: bool) -> tuple[Parts, Parts]:
    """(prefix, stripped top) for an archive: one top directory is dropped, as Dpkg::Source::Archive does."""
    tops = {_parts(m.name)[0] for m in members if _parts(m.name)}
    if strip_single_top and len(tops) == 1:
        (top,) = tops
        alone = [m for m in members if _parts(m.name) == (top,)]
        if all(m.kind == "dir" for m in alone):
            return prefix, (top,)
    return prefix, ()


def _place(name: str, prefix: Parts, top: Parts) -> Parts:
    parts = _parts(name)
    if top and parts[: len(top)] == top:
        parts = parts[len(top) :]
    return (*prefix, *parts)


def check_archives(
    paths: list[Path], *, max_unpacked_bytes: int, max_members: int = DEFAULT_MAX_MEMBERS
) -> int:
    """Check a source package's archives together; return their unpacked size.

    Refused: absolute or `..` member names, device files and FIFOs, more than `max_members` members or
    `max_unpacked_bytes` of content, an archive GNU tar reads differently, a member written through a
    symbolic link, a symbolic link that leads outside the tree (followed through the tree, link by link),
    and a hard link to anything but an earlier regular file reached without a symbolic link.
    """

    def order(path: Path) -> tuple[int, str]:
        return (2 if DEBIAN.search(path.name) else 1 if ADDON.search(path.name) else 0, path.name)

    tree = _Tree(paths[0].name if paths else "")
    total = count = 0
    for path in sorted(paths, key=order):
        members = read_members(
            path, max_members=max_members - count, max_unpacked_bytes=max_unpacked_bytes - total
        )
        count += len(members)
        total += sum(m.size for m in members)
        addon = ADDON.search(path.name)
        if DEBIAN.search(path.name):
            tree.remove(("debian",))
            prefix, top = _layout(members, (), strip_single_top=False)
        else:
            prefix = (addon.group(1),) if addon else ()
            if addon:
                tree.remove(prefix)
            prefix, top = _layout(members, prefix, strip_single_top=True)
        tree.archive = path.name
        for member in members:
            _add(tree, member, _place(member.name, prefix, top), prefix, top)
    for parts, (kind, target) in tree.nodes.items():
        if kind == "sym" and tree.resolve((*parts[:-1], *_parts(target))) is None:
            raise BadUpload(f"symbolic link {'/'.join(parts)!r} points outside the tree ({target!r})")
        above = tree.symlink_above(parts)
        if above is not None:
            raise BadUpload(f"{'/'.join(parts)!r} lies under the symbolic link {'/'.join(above)!r}")
    return total


def _add(tree: _Tree, member: Member, parts: Parts, prefix: Parts, top: Parts) -> None:
    name, archive = member.name, tree.archive
    if not parts:
        return  # the stripped top directory itself
    above = tree.symlink_above(parts)
    if above is not None:
        raise BadUpload(
            f"{archive}: member {name!r} would be written through the symbolic link {'/'.join(above)!r}"
        )
    if member.kind == "sym":
        target = member.link
        if target.startswith("/") or tree.resolve((*parts[:-1], *_parts(target))) is None:
            raise BadUpload(f"{archive}: symbolic link {name!r} points outside the tree ({target!r})")
    elif member.kind == "hard":
        linked = _place(member.link, prefix, top)
        if ".." in member.link.split("/") or member.link.startswith("/") or tree.symlink_above(linked):
            raise BadUpload(
                f"{archive}: hard link {name!r} points outside the tree or through a symbolic link "
                f"({member.link!r})"
            )
        if tree.nodes.get(linked, ("", ""))[0] != "file":
            raise BadUpload(
                f"{archive}: hard link {name!r} does not point to an earlier regular file ({member.link!r})"
            )
    tree.nodes[parts] = (
        "file" if member.kind == "hard" else member.kind,
        member.link if member.kind == "sym" else "",
    )


def check_source_archive(
    path: Path, *, max_unpacked_bytes: int, max_members: int = DEFAULT_MAX_MEMBERS
) -> int:
    """One archive checked alone (as it unpacks by itself); return its unpacked size."""
    return check_archives([path], max_unpacked_bytes=max_unpacked_bytes, max_members=max_members)


def check_tree(root: Path) -> None:
    """After extraction: only files, directories and symbolic links, and every path, links followed by the
    real filesystem, inside `root`."""
    top = root.resolve()
    for directory, subdirs, names in os.walk(root):
        for entry in (*subdirs, *names):
            path = Path(directory, entry)
            mode = path.lstat().st_mode
            relative = path.relative_to(root)
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                raise BadUpload(f"the source tree holds {relative}, which is not a file or directory")
            try:
                resolved = Path(os.path.realpath(path, strict=False))
            except OSError:
                raise BadUpload(
                    f"the source tree's path {relative} cannot be resolved (a link loop?)"
                ) from None
            if not resolved.is_relative_to(top):
                raise BadUpload(f"the source tree's symbolic link {relative} points outside it")
