"""Campaign tests with a real executor: the test source and the binaries a run installs come from the suite's
mirror, checked against the imported indices' SHA-256, then autopkgtest runs with the worker's executor.

What a run uses (docs/campaigns.md, real executor): the target's tests from its suite version —
except the new side of the trigger itself, which runs the upload's own tests — with the target's own
binaries of that version and the trigger's binaries: the upload's on the *new* side, the suite's on the
*reference* side. Everything else comes from the testbed's apt sources. Passing the binaries
explicitly makes both sides use exactly the suite state the campaign planned against, and makes
autopkgtest use them instead of building the source again (binaries given imply --no-built-binaries).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.debian_support import Version
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import faults
from activities.debian_tasks import DebianTasks
from activities.dsc import ARCHIVE
from activities.errors import translate_errors
from activities.history import WORKER_IDENTITY
from activities.source_archives import check_archives
from activities.store import NewArtifact, StoredArtifact
from models.artifacts import AutopkgtestData
from models.campaign import RunInput, RunOutcome, RunResult, Side
from models.suite import BINARY_ITEM, SOURCE_ITEM, SUITE_CATEGORY
from models.verdicts import run_result

# The source item of the target, and the binary items of the named sources for one architecture and `all`.
_SUITE_FILES = text(
    "SELECT i.category, i.data FROM collection_item i JOIN collection c ON c.id = i.collection_id "
    "WHERE c.category = :suite_category AND c.name = :suite AND i.removed_at IS NULL "
    "AND i.category = :source_item AND i.name = :source_name "
    "UNION ALL "
    "SELECT i.category, i.data FROM collection_item i JOIN collection c ON c.id = i.collection_id "
    "WHERE c.category = :suite_category AND c.name = :suite AND i.removed_at IS NULL "
    "AND i.category = :binary_item AND (i.data ->> 'source') = ANY(:sources) "
    "AND (i.data ->> 'architecture') IN (:architecture, 'all')"
).bindparams(bindparam("sources", type_=ARRAY(Text)))
_SUITE_MIRROR = text("SELECT data ->> 'mirror' FROM collection WHERE category = :category AND name = :suite")

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


def _pool_files(source_data: dict[str, Any]) -> tuple[PoolFile, ...]:
    directory = source_data.get("directory", "")
    files = [PoolFile(f"{directory}/{f['name']}", f["sha256"], int(f["size"])) for f in source_data["files"]]
    # The .dsc first: it is what autopkgtest is given.
    return tuple(sorted(files, key=lambda f: not f.name.endswith(".dsc")))


def _binary_file(data: dict[str, Any]) -> PoolFile:
    return PoolFile(data["filename"], data["sha256"], int(data["size"]))


def _newest_build(
    binaries: Iterable[dict[str, Any]], source: str, version: str | None
) -> list[dict[str, Any]]:
    """The binaries of one source version: `version`, or the newest the suite has."""
    built = [b for b in binaries if b["source"] == source]
    if version is None and built:
        version = str(max((b["source_version"] for b in built), key=Version))
    return [b for b in built if b["source_version"] == version]


class ArchiveTests(DebianTasks):
    """The campaign test activity of real executors (the simulated one: activities/campaign_tasks.py)."""

    def __init__(
        self,
        *,
        pool_cache: PoolCache,
        missing_file_tries: int = 4,
        missing_file_backoff_s: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pool_cache = pool_cache
        # A file the mirror lacks is looked for again after backoff, 2 x backoff, … (a mirror mid-sync)
        # before the run gives up and its target is UNTESTABLE.
        self.missing_file_tries = missing_file_tries
        self.missing_file_backoff_s = missing_file_backoff_s
        # Suite look-ups per (suite, state, target, version, architecture, trigger): a campaign asks for
        # the same trigger binaries in every run; suite states never change once computed.
        self._files: OrderedDict[tuple[str, ...], tuple[str, RunFiles]] = OrderedDict()
        self._files_lock = threading.Lock()

    def _suite_files(self, params: RunInput) -> tuple[str, RunFiles]:
        key = (
            params.suite,
            params.suite_state,
            params.target.source,
            params.target.version,
            params.architecture,
            params.trigger_source,
        )
        with self._files_lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        found = self._look_up(params)
        with self._files_lock:
            self._files[key] = found
            while len(self._files) > 4096:
                self._files.popitem(last=False)
        return found

    def _look_up(self, params: RunInput) -> tuple[str, RunFiles]:
        target = params.target
        with self.sessions() as session:
            mirror = session.scalar(_SUITE_MIRROR, {"category": SUITE_CATEGORY, "suite": params.suite})
            rows = session.execute(
                _SUITE_FILES,
                {
                    "suite_category": SUITE_CATEGORY,
                    "suite": params.suite,
                    "source_item": SOURCE_ITEM,
                    "source_name": f"{target.source}_{target.version}",
                    "binary_item": BINARY_ITEM,
                    "sources": sorted({target.source, params.trigger_source}),
                    "architecture": params.architecture,
                },
            ).all()
        sources = [data for category, data in rows if category == SOURCE_ITEM]
        binaries = [data for category, data in rows if category == BINARY_ITEM]
        if not sources or not sources[0].get("files"):
            raise LookupError(
                f"{target.source} {target.version} is not in suite {params.suite} with its files "
                "(import the suite again with this debflow version)"
            )
        if not mirror:
            raise LookupError(f"suite {params.suite} has no mirror: import it with `--mirror URL`")
        own = _newest_build(binaries, target.source, target.version)
        trigger = (
            []
            if target.source == params.trigger_source
            else _newest_build(binaries, params.trigger_source, None)
        )
        return str(mirror), RunFiles(
            source=_pool_files(sources[0]),
            own=tuple(_binary_file(b) for b in own),
            trigger=tuple(_binary_file(b) for b in trigger),
        )

    def _upload_binaries(self, params: RunInput, work: Path) -> list[Path]:
        """The upload's .debs for this architecture and `all` (from its debian:binary-package artifacts)."""
        known = self.store.artifacts(params.new_binary_artifact_ids)
        wanted = [
            a.id
            for a in known.values()
            if a.category == "debian:binary-package"
            and a.data.get("architecture") in (params.architecture, "all")
        ]
        if not wanted:
            raise ApplicationError(
                f"the upload has no binary packages for {params.architecture} among artifacts "
                f"{params.new_binary_artifact_ids}",
                type="BadCampaign",
                non_retryable=True,
            )
        stored = self.store.materialize(wanted, work)
        return [path for files in stored.values() for path in files.values() if path.suffix == ".deb"]

    @activity.defn(name="run_archive_test")
    def run_archive_test(self, params: RunInput) -> RunOutcome:
        """One autopkgtest run of a campaign target from the suite's archive, new or reference side."""
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self._resume(lambda stored, _tries: outcome_from(stored))
            if reused is not None:
                return reused
            with self._workspace() as work:
                try:
                    return self._run(params, work, started, clock)
                except NotOnMirror as e:
                    raise self._not_on_mirror(e) from e

    def _not_on_mirror(self, missing: NotOnMirror) -> ApplicationError:
        """A retry after a backoff while tries are left; then a non-retryable error, which the batch
        records as the target's UNTESTABLE verdict."""
        tries = activity.info().attempt
        if tries < self.missing_file_tries:
            delay = self.missing_file_backoff_s * 2 ** (tries - 1)
            return ApplicationError(
                f"{missing} (try {tries} of {self.missing_file_tries}, next in {delay:g} s)",
                type="NotOnMirror",
                next_retry_delay=dt.timedelta(seconds=delay),
            )
        return ApplicationError(
            f"{missing}, still after {tries} tries", type="NotOnMirror", non_retryable=True
        )

    def _run(self, params: RunInput, work: Path, started: dt.datetime, clock: float) -> RunOutcome:
        mirror, files = self._suite_files(params)
        fetched = work / "archive"
        fetched.mkdir()
        if params.side is Side.NEW and params.target.source == params.trigger_source:
            # The upload's own tests run from the upload, as Debian's migration tests do.
            if params.new_source_artifact_id is None:
                raise ApplicationError("a new-side run needs the upload's source", non_retryable=True)
            dsc = self._source_files(params.new_source_artifact_id, work / "upload-source")
        else:
            source = [self.pool_cache.fetch(mirror, f, fetched) for f in files.source]
            check_archives(
                [path for path in source if ARCHIVE.search(path.name)],
                max_unpacked_bytes=self.max_unpacked_bytes,
                max_members=self.max_archive_members,
            )
            dsc = source[0]
        if params.side is Side.NEW:
            # The upload replaces the trigger's binaries (the target's own, if it is the trigger).
            own = [] if params.target.source == params.trigger_source else list(files.own)
            debs = [self.pool_cache.fetch(mirror, f, fetched) for f in own]
            debs += self._upload_binaries(params, work / "upload")
        else:
            debs = [self.pool_cache.fetch(mirror, f, fetched) for f in (*files.own, *files.trigger)]
        outcome, tests, stored_files, environment_s = self._run_tests(
            dsc,
            debs,
            suite=params.suite,
            architecture=params.architecture,
            work=work,
            stage=f"autopkgtest {params.side}",
            subject=params.target.source,
        )
        result = run_result(outcome.returncode)
        assert result is not None  # infrastructure exit codes raised in _run_tests
        duration = time.monotonic() - clock - environment_s
        target = params.target
        data = AutopkgtestData(
            source=target.source,
            version=target.version,
            architecture=params.architecture,
            suite=params.suite,
            result="success" if result is not RunResult.FAIL else "failure",
            exit_code=outcome.returncode,
            virt_server=f"{self.executor.name}:{self.executor.virt_server}",
            tests=tests,
            duration_s=round(duration, 3),
            environment_s=round(environment_s, 3),
        )
        info = activity.info()
        (artifact_id,) = self.store.register(
            [NewArtifact("debian:autopkgtest", data, stored_files, self._key("log"))],
            workflow_id=info.workflow_id,
            activity_id=info.activity_id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expiration_days),
        )
        activity.heartbeat({"stage": "stored", "artifact_ids": [artifact_id]})
        faults.after_store("run_archive_test")
        return RunOutcome(
            result=result,
            exit_code=outcome.returncode,
            tests={name: t.status for name, t in tests.items()},
            log_artifact_id=artifact_id,
            duration_s=duration,
            started_at=started,
            worker=WORKER_IDENTITY,
        )


def outcome_from(stored: list[StoredArtifact]) -> RunOutcome | None:
    """The outcome an interrupted try stored (its log artifact says everything), or None."""
    found = next((a for a in stored if a.category == "debian:autopkgtest"), None)
    if found is None:
        return None
    exit_code = int(found.data["exit_code"])
    result = run_result(exit_code)
    if result is None:
        return None
    return RunOutcome(
        result=result,
        exit_code=exit_code,
        tests={str(name): str(t["status"]) for name, t in found.data["tests"].items()},
        log_artifact_id=found.id,
        duration_s=float(found.data.get("duration_s") or 0.0),
        worker=WORKER_IDENTITY,
    )
