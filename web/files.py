"""Logs and files of artifacts: looked up by artifact id and a path the artifact lists, read from the
content-addressed store only, streamed, with byte ranges and gzip."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from activities.storage.artifact_views import log_file
from activities.storage.store import ArtifactStore
from web.ids import bad, not_found

CHUNK = 64 * 1024
SMALL = 256 * 1024  # read into memory at once; larger files are streamed chunk by chunk
TEXT = "text/plain; charset=utf-8"
# Files shown as text; anything else (a .deb, a tarball) is offered as a download.
_TEXT_NAMES = re.compile(r"(^|/)(log|summary|[^/]*\.(log|txt|dsc|changes|buildinfo|build|json))$")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# A private debci job's log artifact has `"private": true` in its data: the site's queries leave it out
# (public_artifact), its file routes refuse it (find_file).
PRIVATE = "private"


def public_artifact(table: str = "a") -> str:
    """The SQL condition that the artifact row `table` is not a private job's."""
    return f"(({table}.data ->> '{PRIVATE}') IS DISTINCT FROM 'true')"


_FILES = text(
    """
    SELECT a.category, a.data, f.path, b.sha256, b.size
    FROM artifact a JOIN file_in_artifact f ON f.artifact_id = a.id JOIN file b ON b.id = f.file_id
    WHERE a.id = :id
    """
)


def is_private(data: dict[str, Any] | None) -> bool:
    """A private debci job's artifact (its log): served to its requester by the API only."""
    return bool(data) and data.get(PRIVATE) is True  # type: ignore[union-attr]


def find_file(
    db: Session, store: ArtifactStore, artifact_id: int, path: str | None, *, include_private: bool = False
) -> tuple[Path, int, str]:
    """The blob, size and name of an artifact's file (`path` None: its log). 404 when there is none, and
    for a private job's artifact unless the caller checked who asks (`include_private`): told like a
    missing one, so that the site does not even say it exists."""
    rows = db.execute(_FILES, {"id": artifact_id}).all()
    if not rows or (is_private(rows[0][1]) and not include_private):
        raise not_found(f"no artifact {artifact_id} with files: it never existed or has expired")
    files = {p: (sha, size) for _c, _d, p, sha, size in rows}
    if path is None:
        path = log_file(rows[0][0], rows[0][1], sorted(files))
        if path is None:
            raise not_found(f"artifact {artifact_id} is a {rows[0][0]}, which has no log")
    if path not in files:
        raise not_found(f"artifact {artifact_id} has no file {path[:60]!r}")
    sha, size = files[path]
    blob = store.blob_path(sha)
    if not blob.is_file():
        raise not_found(f"the file {path[:60]!r} of artifact {artifact_id} is missing from the store")
    return blob, size, path


def _read(blob: Path, start: int, length: int) -> Iterator[bytes]:
    with blob.open("rb") as f:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def _gzipped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _send(chunks: Iterator[bytes], length: int, status: int, headers: dict[str, str], media: str) -> Response:
    """A small body is read (and compressed) at once, in the caller's thread; a large one is streamed."""
    if length <= SMALL:
        body = b"".join(chunks)
        return Response(body, status, headers=headers, media_type=media)
    return StreamingResponse(chunks, status, headers=headers, media_type=media)


def file_response(request: Request, blob: Path, size: int, name: str) -> Response:
    """The whole file (gzip when accepted) or one byte range of it (RFC 9110 §14), never as HTML.
    Called in a worker thread: a small file is read here, a large one streamed later."""
    is_text = bool(_TEXT_NAMES.search(name))
    headers = {"Accept-Ranges": "bytes", "Vary": "Accept-Encoding"}
    media = TEXT if is_text else "application/octet-stream"
    if not is_text:
        headers["Content-Disposition"] = f'attachment; filename="{name.rsplit("/", 1)[-1]}"'
    wanted = request.headers.get("range")
    if wanted is not None:
        match = _RANGE.fullmatch(wanted.strip())
        if not match or match.groups() == ("", ""):
            raise bad(f"unsupported Range {wanted[:40]!r}: one range, bytes=FIRST-LAST")
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:  # the last N bytes
            start, end = max(0, size - int(last)), size - 1
        if start >= size or end < start:
            return Response(
                f"error: range {wanted[:40]} is outside the file ({size} bytes)\n",
                status_code=416,
                media_type=TEXT,
                headers={"Content-Range": f"bytes */{size}"},
            )
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        length = end - start + 1
        return _send(_read(blob, start, length), length, 206, headers, media)
    if "gzip" in request.headers.get("accept-encoding", "") and is_text:
        headers["Content-Encoding"] = "gzip"
        return _send(_gzipped(_read(blob, 0, size)), size, 200, headers, media)
    headers["Content-Length"] = str(size)
    return _send(_read(blob, 0, size), size, 200, headers, media)
