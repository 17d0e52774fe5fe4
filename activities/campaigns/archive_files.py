"""Archive files for campaign runs: which pool files a run needs, and a per-host cache that fetches each
once from the mirror, checked against the suite index's SHA-256 and size."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.debian_support import Version

CHUNK = 1024 * 1024


class NotOnMirror(LookupError):
    """The suite's index names a file the mirror does not serve (HTTP 404 or 410, or no such file).

    Nothing tells why: a partial mirror, one in the middle of a sync or lagging, or a suite imported
    long ago all look the same; the run retries a few times, then the target is UNTESTABLE.
    """


@dataclass(frozen=True)
class PoolFile:
    """A file of the archive: where it is below the mirror root and what it must hash to."""

    path: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RunFiles:
    """What one run needs from the archive: the test source (its .dsc first), the target's own binaries
    and the trigger's binaries in the suite (none when the target is the trigger)."""

    source: tuple[PoolFile, ...]
    own: tuple[PoolFile, ...]
    trigger: tuple[PoolFile, ...]


class PoolCache:
    """Archive files fetched once per worker host, kept by SHA-256 and linked into each run's workspace.

    A glibc campaign installs the same few binaries in thousands of runs: they are downloaded once.
    Files unused for `max_age_days` are removed when the cache is next written to.
    """

    def __init__(self, root: Path, *, max_age_days: float = 7, timeout_s: float = 120) -> None:
        self.root = root
        self.max_age_s = max_age_days * 86400
        self.timeout_s = timeout_s
        self._pruned = 0.0

    def fetch(self, mirror: str, wanted: PoolFile, into: Path) -> Path:
        cached = self.root / wanted.sha256[:2] / wanted.sha256
        if not cached.exists():
            self._download(mirror, wanted, cached)
        else:
            os.utime(cached)  # recently used: kept by the pruning
        target = into / wanted.name
        try:
            os.link(cached, target)
        except OSError:  # another file system
            shutil.copyfile(cached, target)
        return target

    def _download(self, mirror: str, wanted: PoolFile, cached: Path) -> None:
        url = f"{mirror.rstrip('/')}/{wanted.path}"
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.part")
        digest, size = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response, open(partial, "wb") as out:
                while block := response.read(CHUNK):
                    size += len(block)
                    if size > wanted.size:
                        break
                    digest.update(block)
                    out.write(block)
        except urllib.error.HTTPError as e:
            partial.unlink(missing_ok=True)
            if e.code in (404, 410):
                raise NotOnMirror(f"the mirror {mirror} has no {wanted.path} (HTTP {e.code})") from None
            raise
        except urllib.error.URLError as e:
            partial.unlink(missing_ok=True)
            # A file:// mirror (a local archive) reports a missing file this way.
            if isinstance(e.reason, FileNotFoundError):
                raise NotOnMirror(f"the mirror {mirror} has no {wanted.path} (no such file)") from None
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if size != wanted.size or digest.hexdigest() != wanted.sha256:
            partial.unlink(missing_ok=True)
            # Retryable: a mirror caught in the middle of a sync serves a mix of old and new files.
            raise ConnectionError(
                f"{url}: got {size} bytes with SHA-256 {digest.hexdigest()[:16]}…, the index says "
                f"{wanted.size} bytes with {wanted.sha256[:16]}…"
            )
        os.replace(partial, cached)
        self._prune()

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned < 3600:
            return
        self._pruned = now
        for path in self.root.glob("*/*"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > self.max_age_s:
                    path.unlink()


def pool_files(source_data: dict[str, Any]) -> tuple[PoolFile, ...]:
    directory = source_data.get("directory", "")
    files = [PoolFile(f"{directory}/{f['name']}", f["sha256"], int(f["size"])) for f in source_data["files"]]
    # The .dsc first: it is what autopkgtest is given.
    return tuple(sorted(files, key=lambda f: not f.name.endswith(".dsc")))


def binary_file(data: dict[str, Any]) -> PoolFile:
    return PoolFile(data["filename"], data["sha256"], int(data["size"]))


def newest_build(
    binaries: Iterable[dict[str, Any]], source: str, version: str | None
) -> list[dict[str, Any]]:
    """The binaries of one source version: `version`, or the newest the suite has."""
    built = [b for b in binaries if b["source"] == source]
    if version is None and built:
        version = str(max((b["source_version"] for b in built), key=Version))
    return [b for b in built if b["source_version"] == version]
