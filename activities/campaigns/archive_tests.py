"""Campaign tests with a real executor: the test source and the binaries a run installs come from the suite's
mirror, checked against the imported indices' SHA-256, then autopkgtest runs with the worker's executor.

What a run uses (docs/campaigns.md, real executor): the target's tests from its suite version —
except the new side of the trigger itself, which runs the upload's own tests — with the target's own
binaries of that version and the trigger's binaries: the upload's on the *new* side, the suite's on the
*reference* side. Everything else comes from the testbed's apt sources. Passing the binaries
explicitly makes both sides use exactly the suite state the campaign planned against, and makes
autopkgtest use them instead of building the source again (binaries given imply --no-built-binaries).

Pins (a transition tested together, or a debci request's pin-packages) add, on the new side only, the
newest build of the pinned binaries from their own suite's mirror (activities/campaigns/pinned.py); a
pinned target is tested from that suite's source version. A new side with pins and no upload installs
nothing of an upload: only the target's own binaries and the pinned ones.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaigns.archive_files import (
    NotOnMirror,
    PoolCache,
    RunFiles,
    binary_file,
    newest_build,
    pool_files,
)
from activities.campaigns.pinned import PinnedFiles, deb_package, pinned_files
from activities.debian.dsc import ARCHIVE
from activities.debian.source_archives import check_archives
from activities.errors import translate_errors
from activities.storage.history import WORKER_IDENTITY
from activities.storage.store import NewArtifact, StoredArtifact
from activities.tools.runs import ToolRuns
from models.campaign import RunInput, RunOutcome, Side
from models.suite import BINARY_ITEM, SOURCE_ITEM, SUITE_CATEGORY
from models.verdicts import run_result
from models.vocabulary import ActivityName, ArtifactCategory

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


class ArchiveTests:
    """The campaign test activity of real executors (the simulated one: campaigns/campaign_tasks.py)."""

    def __init__(
        self,
        runs: ToolRuns,
        *,
        pool_cache: PoolCache,
        missing_file_tries: int = 4,
        missing_file_backoff_s: float = 60,
    ) -> None:
        self.runs = runs
        self.sessions = runs.sessions
        self.store = runs.store
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
        own = newest_build(binaries, target.source, target.version)
        trigger = (
            []
            if target.source == params.trigger_source
            else newest_build(binaries, params.trigger_source, None)
        )
        return str(mirror), RunFiles(
            source=pool_files(sources[0]),
            own=tuple(binary_file(b) for b in own),
            trigger=tuple(binary_file(b) for b in trigger),
        )

    def _upload_binaries(self, params: RunInput, work: Path) -> list[Path]:
        """The upload's .debs for this architecture and `all` (from its debian:binary-package artifacts)."""
        known = self.store.artifacts(params.new_binary_artifact_ids)
        wanted = [
            a.id
            for a in known.values()
            if a.category == ArtifactCategory.BINARY_PACKAGE
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

    def _checked_source(self, source: list[Path]) -> Path:
        """The .dsc of a source fetched from a mirror, its archives checked before any tool unpacks them."""
        check_archives(
            [path for path in source if ARCHIVE.search(path.name)],
            max_unpacked_bytes=self.runs.max_unpacked_bytes,
            max_members=self.runs.max_archive_members,
        )
        return source[0]

    @activity.defn(name=ActivityName.RUN_ARCHIVE_TEST)
    def run_archive_test(self, params: RunInput) -> RunOutcome:
        """One autopkgtest run of a campaign target from the suite's archive, new or reference side."""
        started, clock = dt.datetime.now(dt.UTC), time.monotonic()
        with translate_errors():
            reused = self.runs.resume(lambda stored, _tries: outcome_from(stored))
            if reused is not None:
                return reused
            with self.runs.workspace() as work:
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

    def _pinned(self, params: RunInput) -> list[PinnedFiles]:
        """The pins' files: the new side's only (the reference side is the suite alone)."""
        if params.side is not Side.NEW or not params.pins:
            return []
        with self.sessions() as session:
            return [pinned_files(session, pin, params.architecture) for pin in params.pins]

    def _run(self, params: RunInput, work: Path, started: dt.datetime, clock: float) -> RunOutcome:
        mirror, files = self._suite_files(params)
        pinned = self._pinned(params)
        fetched = work / "archive"
        fetched.mkdir()
        target = params.target
        # The side that installs an upload: a debci request's new side has pins and no upload.
        upload = params.side is Side.NEW and bool(
            params.new_source_artifact_id is not None or params.new_binary_artifact_ids
        )
        pinned_target = next((p for p in pinned if target.source in p.sources), None)
        tested_version = target.version
        if pinned_target is not None:
            # The target itself is pinned: its tests (and binaries) come from the pin suite's version.
            pinned_source = pinned_target.sources[target.source]
            source = [self.pool_cache.fetch(pinned_target.mirror, f, fetched) for f in pinned_source.files]
            dsc, tested_version = self._checked_source(source), pinned_source.version
        elif upload and target.source == params.trigger_source:
            # The upload's own tests run from the upload, as Debian's migration tests do.
            if params.new_source_artifact_id is None:
                raise ApplicationError("a new-side run needs the upload's source", non_retryable=True)
            dsc = self.runs.source_files(params.new_source_artifact_id, work / "upload-source")
        else:
            dsc = self._checked_source([self.pool_cache.fetch(mirror, f, fetched) for f in files.source])
        if params.side is Side.NEW:
            # The upload replaces the trigger's binaries (the target's own, if it is the trigger); a
            # pinned target's own binaries are among the pinned ones.
            own = [] if pinned_target or (upload and target.source == params.trigger_source) else files.own
            debs = [self.pool_cache.fetch(mirror, f, fetched) for f in own]
            if params.new_binary_artifact_ids:
                debs += self._upload_binaries(params, work / "upload")
            for pin in pinned:
                debs += [self.pool_cache.fetch(pin.mirror, f, fetched) for f in pin.binaries]
            # One version of a package: a pinned one replaces the suite's or the upload's.
            debs = list({deb_package(deb.name): deb for deb in debs}.values())
        else:
            debs = [self.pool_cache.fetch(mirror, f, fetched) for f in (*files.own, *files.trigger)]
        run = self.runs.run_tests(
            dsc,
            debs,
            suite=params.suite,
            architecture=params.architecture,
            work=work,
            stage=f"autopkgtest {params.side}",
            subject=params.target.source,
        )
        outcome = run.outcome
        result = run_result(outcome.returncode)
        assert result is not None  # infrastructure exit codes raised in run_tests
        duration = time.monotonic() - clock - run.environment_s
        data = run.data(
            source=target.source,
            version=tested_version,
            architecture=params.architecture,
            suite=params.suite,
            virt_server=self.runs.virt_server,
            duration_s=duration,
        )
        info = activity.info()
        (artifact_id,) = self.store.register(
            [NewArtifact(ArtifactCategory.AUTOPKGTEST, data, run.files, self.runs.key("log"))],
            workflow_id=info.workflow_id,
            activity_id=info.activity_id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=self.runs.expiration_days),
        )
        activity.heartbeat({"stage": "stored", "artifact_ids": [artifact_id]})
        self.runs.faults.after_store(ActivityName.RUN_ARCHIVE_TEST)
        return RunOutcome(
            result=result,
            exit_code=outcome.returncode,
            tests={name: t.status for name, t in run.tests.items()},
            log_artifact_id=artifact_id,
            duration_s=duration,
            started_at=started,
            worker=WORKER_IDENTITY,
        )


def outcome_from(stored: list[StoredArtifact]) -> RunOutcome | None:
    """The outcome an interrupted try stored (its log artifact says everything), or None."""
    found = next((a for a in stored if a.category == ArtifactCategory.AUTOPKGTEST), None)
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
