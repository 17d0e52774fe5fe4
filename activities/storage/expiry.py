"""Expiry activities: short, batched transactions that lock with SKIP LOCKED and never wait on writers.

Every batch: select candidates (no lock); lock them FOR UPDATE SKIP LOCKED (a writer that is adding a
reference holds FOR KEY SHARE, so its rows are skipped); decide again in a new statement, which sees
every reference committed before the locks; delete at most `batch_size` rows; commit; only then remove
blobs. See activities/storage/retention.py for the rules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from collections.abc import Callable, Iterable
from itertools import groupby
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.metrics import NO_METRICS, Metrics
from activities.storage import retention as r
from activities.storage.store import ArtifactStore
from models.expiry_payloads import (
    BlobSweepInput,
    BlobSweepResult,
    ExpiryBatchInput,
    ExpiryBatchResult,
    RetentionPolicy,
    SyncWorkflowsInput,
    SyncWorkflowsResult,
)
from models.vocabulary import ActivityName

BEGINNING = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SHA256_HEX = frozenset("0123456789abcdef")
TRASH_PREFIX = "expired-"  # then the time it was moved aside, the SHA-256 and a random tag


def _is_sha256(name: str) -> bool:
    return len(name) == 64 and set(name) <= SHA256_HEX


def _time_cursor(cursor: list[str]) -> tuple[dt.datetime, int]:
    if not cursor:
        return BEGINNING, 0
    return dt.datetime.fromisoformat(cursor[0]), int(cursor[1])


class ExpiryActivities:
    """The expiry workflow's activities over one database and artifact store."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        client: Client | None = None,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.client = client
        self.metrics = metrics

    # -- running workflows ----------------------------------------------------------------------

    @activity.defn(name=ActivityName.SYNC_RUNNING_WORKFLOWS)
    async def sync_running_workflows(self, params: SyncWorkflowsInput) -> SyncWorkflowsResult:
        """Record the workflows Temporal runs now: what they made, or own, is kept."""
        if self.client is None:
            raise RuntimeError("sync_running_workflows needs a Temporal client")
        running: set[str] = set()
        async for execution in self.client.list_workflows('ExecutionStatus = "Running"', page_size=1000):
            running.add(execution.id)
            if len(running) % 1000 == 0:
                activity.heartbeat(len(running))
        return await asyncio.to_thread(self.record_running_workflows, sorted(running), params.policy)

    def record_running_workflows(self, running: list[str], policy: RetentionPolicy) -> SyncWorkflowsResult:
        """Insert the new ids, delete the finished ones; rows that stay are not rewritten."""
        with self.sessions.begin() as session:
            r.set_timeouts(session, policy)
            added = session.execute(
                text(
                    "INSERT INTO running_workflow (workflow_id) SELECT unnest(CAST(:ids AS text[])) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"ids": running},
            )
            removed = session.execute(
                text("DELETE FROM running_workflow WHERE NOT workflow_id = ANY(CAST(:ids AS text[]))"),
                {"ids": running},
            )
            return SyncWorkflowsResult(
                running=len(running),
                added=added.rowcount,  # type: ignore[attr-defined]
                removed=removed.rowcount,  # type: ignore[attr-defined]
            )

    # -- QA results -----------------------------------------------------------------------------

    @activity.defn(name=ActivityName.PRUNE_QA_RESULTS)
    def prune_qa_results(self, params: ExpiryBatchInput) -> ExpiryBatchResult:
        """Soft-remove QA results beyond the N newest per (task, package, architecture), except those
        a running workflow owns; one page of one `debian:qa-results` collection per call."""
        policy = params.policy
        cursor = params.cursor or ["0"]
        with self.sessions.begin() as session:
            r.set_timeouts(session, policy)
            collections = list(session.scalars(r.QA_COLLECTIONS, {"from_id": int(cursor[0])}))
            if not collections:
                return ExpiryBatchResult(done=True)
            cid = collections[0]
            after = cursor[1:] if len(cursor) == 4 and cid == int(cursor[0]) else []
            limit = max(policy.batch_size, 2 * policy.qa_results_keep + 1)
            values: dict[str, Any] = {"cid": cid, "limit": limit}
            if after:
                values |= dict(zip(("task", "package", "architecture"), after, strict=True))
            rows = session.execute(r.qa_page(after_key=bool(after)), values).all()
            groups = [(k, list(g)) for k, g in groupby(rows, key=lambda row: tuple(row[2:5]))]
            if len(rows) == limit and len(groups) > 1:
                groups.pop()  # the last key may go on in the next page
            retire: list[int] = []
            kept = 0
            for _, group in groups:
                older = group[: -policy.qa_results_keep]
                retire += [row.id for row in older if not row.live]
                kept += len(group) - len(older) + sum(1 for row in older if row.live)
            changed = 0
            if retire:
                locked = list(session.scalars(r.LOCK_ITEMS, {"ids": retire}))
                changed = session.execute(r.RETIRE_QA, {"ids": locked, "run_id": params.run_id}).rowcount  # type: ignore[attr-defined]
                kept += len(retire) - changed
        self.metrics.expired("qa_result", changed)
        if not groups:
            next_cursor = [str(cid + 1)]
        elif len(rows) == limit and len(groups) == 1 and changed:
            next_cursor = [str(cid), *after]  # one key fills the page: read it again, now shorter
        else:
            next_cursor = [str(cid), *(str(v) for v in groups[-1][0])]
        return ExpiryBatchResult(changed=changed, kept=kept, cursor=next_cursor)

    # -- collection items -----------------------------------------------------------------------

    @activity.defn(name=ActivityName.EXPIRE_COLLECTION_ITEMS)
    def expire_collection_items(self, params: ExpiryBatchInput) -> ExpiryBatchResult:
        """Delete items removed longer ago than their collection's full-history + metadata periods."""
        policy = params.policy
        after_at, after_id = _time_cursor(params.cursor)
        periods = {
            "full_days": policy.removed_item_full_history_days,
            "metadata_days": policy.removed_item_metadata_days,
        }
        with self.sessions.begin() as session:
            r.set_timeouts(session, policy)
            shortest = session.execute(r.SHORTEST_ITEM_PERIOD, periods).scalar_one()
            rows = session.execute(
                r.ITEM_CANDIDATES,
                {
                    **periods,
                    "now": params.now,
                    "upper": params.now - dt.timedelta(days=int(shortest)),
                    "after_at": after_at,
                    "after_id": after_id,
                    "limit": policy.batch_size,
                },
            ).all()
            if not rows:
                return ExpiryBatchResult(done=True)
            due = [row.id for row in rows if row.due]
            changed = 0
            if due:
                locked = list(session.scalars(r.LOCK_ITEMS, {"ids": due}))
                deleted = session.execute(r.DELETE_ITEMS, {**periods, "ids": locked, "now": params.now})
                changed = deleted.rowcount  # type: ignore[attr-defined]
        self.metrics.expired("collection_item", changed)
        last = rows[-1]
        return ExpiryBatchResult(
            changed=changed,
            kept=len(rows) - changed,
            cursor=[last.removed_at.isoformat(), str(last.id)],
            done=len(rows) < policy.batch_size,
        )

    # -- artifacts ------------------------------------------------------------------------------

    @activity.defn(name=ActivityName.EXPIRE_ARTIFACTS)
    def expire_artifacts(self, params: ExpiryBatchInput) -> ExpiryBatchResult:
        """Delete the expired artifacts of one batch that nothing retains, with their file rows;
        then, after the commit, their blobs."""
        policy = params.policy
        after_at, after_id = _time_cursor(params.cursor)
        values = {"now": params.now, "full_days": policy.removed_item_full_history_days}
        with self.sessions.begin() as session:
            r.set_timeouts(session, policy)
            candidates = session.execute(
                r.CANDIDATES,
                {"now": params.now, "after_at": after_at, "after_id": after_id, "limit": policy.batch_size},
            ).all()
            if not candidates:
                return ExpiryBatchResult(done=True)
            ids = [c.id for c in candidates]
            scope, examined = self._scope(session, ids, values, policy.batch_size)
            doomed, files = self._delete_artifacts(session, scope, values)
            shas = self._delete_files(session, files)
        removed = remove_blobs(self.store, shas, policy.orphan_blob_grace_s)
        self.metrics.expired("artifact", len(doomed))
        self.metrics.expired("file", len(shas))
        last = candidates[examined - 1]
        return ExpiryBatchResult(
            changed=len(doomed),
            kept=examined - len([i for i in ids[:examined] if i in doomed]),
            files_deleted=len(shas),
            blobs_removed=removed,
            cursor=[last.expires_at.isoformat(), str(last.id)],
            done=len(candidates) < policy.batch_size and examined == len(candidates),
        )

    @staticmethod
    def _scope(session: Session, ids: list[int], values: dict[str, Any], limit: int) -> tuple[list[int], int]:
        """The rows to lock for the first candidates: each with the expired ancestors it would go with,
        unless one of them is kept; at most `limit` rows. Returns them and how many candidates they cover."""
        nodes: dict[int, set[int]] = {}
        kept_origins: set[int] = set()
        for origin, node, kept in session.execute(r.CLOSURE, {**values, "ids": ids}):
            nodes.setdefault(origin, set()).add(node)
            if kept:
                kept_origins.add(origin)
        scope: set[int] = set()
        for examined, origin in enumerate(ids):
            if origin in kept_origins:
                continue
            group = nodes.get(origin, set())
            if scope and len(scope | group) > limit:
                return sorted(scope), examined
            scope |= group
        return sorted(scope), len(ids)

    @staticmethod
    def _delete_artifacts(
        session: Session, scope: list[int], values: dict[str, Any]
    ) -> tuple[set[int], list[int]]:
        if not scope:
            return set(), []
        locked = list(session.scalars(r.LOCK_ARTIFACTS, {"ids": scope}))
        doomed = list(session.scalars(r.DELETABLE, {**values, "locked": locked, "pinned": []}))
        if not doomed:
            return set(), []
        referencing = session.execute(r.ITEMS_OF, {"ids": doomed}).all()
        if referencing:
            held = set(session.scalars(r.LOCK_ITEMS, {"ids": [row.id for row in referencing]}))
            pinned = sorted({row.artifact_id for row in referencing if row.id not in held})
            if pinned:
                doomed = list(session.scalars(r.DELETABLE, {**values, "locked": locked, "pinned": pinned}))
        if not doomed:
            return set(), []
        files = list(session.scalars(r.FILES_OF, {"ids": doomed}))
        session.execute(r.DELETE_ARTIFACTS, {"ids": doomed})
        return set(doomed), files

    @staticmethod
    def _delete_files(session: Session, file_ids: list[int]) -> list[str]:
        """Delete file rows no artifact names any more; returns their SHA-256s."""
        if not file_ids:
            return []
        locked = list(session.scalars(r.LOCK_FILES, {"ids": sorted(file_ids)}))
        if not locked:
            return []
        return list(session.scalars(r.DELETE_FILES, {"ids": locked}))

    # -- blobs ----------------------------------------------------------------------------------

    @activity.defn(name=ActivityName.COLLECT_ORPHAN_BLOBS)
    def collect_orphan_blobs(self, params: BlobSweepInput) -> BlobSweepResult:
        """Remove blobs under the given store prefixes that no file row names (idempotent), and file
        rows no artifact names; blobs written or reused within the grace period stay."""
        result = BlobSweepResult()
        heartbeat = _heartbeat()
        for prefix in params.prefixes:
            directory = self.store.root / prefix
            found = directory.glob("*/*") if directory.is_dir() else iter(())
            shas = sorted(p.name for p in found if _is_sha256(p.name))
            for start in range(0, len(shas), 1000):
                chunk = shas[start : start + 1000]
                with self.sessions.begin() as session:
                    r.set_timeouts(session, params.policy)
                    rows = session.execute(r.FILES_BY_SHA, {"shas": chunk}).all()
                    unreferenced = [row.id for row in rows if not row[2]]
                    deleted = self._delete_files(session, unreferenced)
                result.files_deleted += len(deleted)
                known = {row.sha256 for row in rows} - set(deleted)
                result.blobs_removed += remove_blobs(
                    self.store, [s for s in chunk if s not in known], params.grace_s
                )
                heartbeat(prefix)
        if params.clean_tmp:
            result.tmp_removed = _clean_tmp(self.store, params.grace_s)
        return result

    def all(self) -> list[Callable[..., Any]]:
        activities: list[Callable[..., Any]] = [
            self.prune_qa_results,
            self.expire_collection_items,
            self.expire_artifacts,
            self.collect_orphan_blobs,
        ]
        if self.client is not None:
            activities.append(self.sync_running_workflows)
        return activities


def _heartbeat() -> Callable[[str], None]:
    def beat(detail: str) -> None:
        if activity.in_activity():
            activity.heartbeat(detail)

    return beat


def remove_blobs(store: ArtifactStore, shas: Iterable[str], grace_s: float) -> int:
    """Remove blobs whose file rows are gone, unless written or reused within `grace_s`.

    A writer reusing a blob touches it (ArtifactStore.put_blob) before it inserts its file row. The
    blob is first renamed away, then its mtime checked again: a touch before the rename shows in the
    mtime (the blob is put back), a touch after it fails and the writer stores the blob anew. A file
    row committed meanwhile puts it back too.
    """
    moved: dict[str, Path] = {}
    trash = store.root / "tmp"
    trash.mkdir(parents=True, exist_ok=True)
    for sha in shas:
        blob = store.blob_path(sha)
        try:
            if time.time() - blob.stat().st_mtime < grace_s:
                continue
            aside = trash / f"{TRASH_PREFIX}{int(time.time())}-{sha}-{uuid.uuid4().hex[:8]}"
            os.rename(blob, aside)
        except FileNotFoundError:
            continue
        if time.time() - aside.stat().st_mtime < grace_s:
            os.rename(aside, blob)
            continue
        moved[sha] = aside
    if not moved:
        return 0
    with store.sessions() as session:
        wanted = set(session.execute(r.FILES_BY_SHA, {"shas": sorted(moved)}).scalars())
    for sha, aside in moved.items():
        if sha in wanted:
            os.rename(aside, store.blob_path(sha))
        else:
            os.unlink(aside)
    return len(moved) - len(wanted)


def _clean_tmp(store: ArtifactStore, grace_s: float) -> int:
    """Temporary files of interrupted writes and expiries, older than the grace period."""
    removed = 0
    directory = store.root / "tmp"
    if not directory.is_dir():
        return 0
    now = time.time()
    for entry in directory.iterdir():
        try:
            if entry.name.startswith(TRASH_PREFIX):
                # A blob moved aside keeps its old mtime: its age is the time in its name.
                age = now - int(entry.name.removeprefix(TRASH_PREFIX).split("-", 1)[0])
            else:
                age = now - entry.stat().st_mtime
            if entry.is_file() and age >= max(grace_s, 3600):
                entry.unlink()
                removed += 1
        except (FileNotFoundError, ValueError):
            continue
    return removed
