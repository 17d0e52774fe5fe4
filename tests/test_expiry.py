"""Retention and expiry on real PostgreSQL and Temporal: bounded history, no lost references, no blocking."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import TEXT, BigInteger, Engine, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from typer.testing import CliRunner

from activities.storage.db_stats import database_stats
from activities.storage.expiry import ExpiryActivities
from activities.storage.expiry_plan import plan_expiry
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import (
    ArtifactStore,
    ExpiredReference,
    NewArtifact,
    Relation,
    write_resolving_once,
)
from models.db import make_engine, make_sessionmaker
from models.expiry_payloads import ExpiryBatchInput, RetentionPolicy
from models.tables import Collection, CollectionItem, RelationType
from tests.test_pipeline import replay
from worker.expiry_schedule import ensure_expiry_schedule, run_expiry_now
from worker.settings import Settings

IDS = ARRAY(BigInteger)
DAY = dt.timedelta(days=1)
# Expired artifacts made in bulk: one file each, whose content is SALT + the artifact id.
BULK = text(
    """
    WITH a AS (
        INSERT INTO artifact (category, data, expires_at)
        SELECT 'debian:package-build-log', jsonb_build_object('source', CAST(:source AS text), 'n', g),
               CAST(:expires_at AS timestamptz) + make_interval(secs => g)
        FROM generate_series(1, :count) AS g RETURNING id
    ), f AS (
        INSERT INTO file (sha256, size)
        SELECT encode(sha256(convert_to(CAST(:salt AS text) || id, 'UTF8')), 'hex'), 0 FROM a
        RETURNING id, sha256
    )
    INSERT INTO file_in_artifact (artifact_id, path, file_id)
    SELECT a.id, 'x.build', f.id FROM a
    JOIN f ON f.sha256 = encode(sha256(convert_to(CAST(:salt AS text) || a.id, 'UTF8')), 'hex')
    RETURNING artifact_id
    """
)


def bulk_artifacts(
    session: Session, store: ArtifactStore, count: int, *, tag: str, expires_at: dt.datetime
) -> list[int]:
    """`count` artifacts with one aged blob each, in (expires_at, id) order."""
    salt = f"blob-{tag}-"
    ids = sorted(
        session.scalars(BULK, {"source": tag, "count": count, "expires_at": expires_at, "salt": salt})
    )
    old = time.time() - 7 * 86400
    for artifact_id in ids:
        content = f"{salt}{artifact_id}".encode()
        path = store.blob_path(hashlib.sha256(content).hexdigest())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (old, old))
    return ids


def existing(engine: Engine, ids: list[int]) -> set[int]:
    with engine.connect() as conn:
        query = text("SELECT id FROM artifact WHERE id = ANY(:ids)").bindparams(bindparam("ids", type_=IDS))
        return set(conn.execute(query, {"ids": ids}).scalars())


def flush_stats(engine: Engine) -> None:
    """Make this engine's backend publish its pending statistics before it answers."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.commit()


# -- task history --------------------------------------------------------------------------------------


def _history(sessions: sessionmaker[Session], subject: str, started: dt.datetime, result: str) -> None:
    with sessions.begin() as session:
        TaskHistoryWriter().add(
            session,
            task_name="build",
            subject=subject,
            context="bookworm/amd64",
            workflow_id=None,
            started_at=started,
            duration_s=1.0,
            result=result,
            usage=[],
        )


def test_history_keeps_newest_last_success_and_last_failure(sessions: sessionmaker[Session]) -> None:
    subject = f"keep-{uuid.uuid4().hex[:10]}"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    results = ["failure", "success"] + ["error"] * 8
    for minute, result in enumerate(results):
        _history(sessions, subject, start + dt.timedelta(minutes=minute), result)
    with sessions() as session:
        kept = session.execute(
            text("SELECT result FROM task_history WHERE subject = :s ORDER BY started_at"), {"s": subject}
        ).scalars()
        assert list(kept) == ["failure", "success", "error", "error", "error", "error", "error"]


def test_steady_state_history_insert_writes_two_tuples_and_no_update(
    engine: Engine, database_url: str
) -> None:
    subject = f"steady-{uuid.uuid4().hex[:10]}"
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    own = make_engine(database_url, pool_size=1, max_overflow=0)  # one backend: its stats are ours
    try:
        writer = make_sessionmaker(own)
        for minute in range(10):
            _history(writer, subject, start + dt.timedelta(minutes=minute), "success")

        # Exact, and blind to other sessions: this transaction's own counters, all tables (once the
        # backend published what earlier transactions left pending, which these views also count).
        flush_stats(own)
        with own.connect() as conn:
            conn.begin()
            in_transaction = sessionmaker(bind=conn, join_transaction_mode="create_savepoint")
            _history(in_transaction, subject, start + dt.timedelta(minutes=10), "success")
            written = conn.execute(
                text(
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables "
                    "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0"
                )
            ).all()
            conn.rollback()
        assert {row[0]: tuple(row[1:]) for row in written} == {"task_history": (1, 0, 1)}

        # The same through pg_stat_user_tables, committed: 20 more inserts, each deleting one row.
        flush_stats(own)
        before = _table_counters(engine, "task_history")
        for minute in range(11, 31):
            _history(writer, subject, start + dt.timedelta(minutes=minute), "success")
        flush_stats(own)
        after = _table_counters(engine, "task_history")
    finally:
        own.dispose()
    inserted, updated, deleted = (a - b for a, b in zip(after, before, strict=True))
    assert (inserted, updated, deleted) == (20, 0, 20)


def _table_counters(engine: Engine, table: str) -> tuple[int, int, int]:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(
            text("SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = :t"),
            {"t": table},
        ).one()
        return int(row[0]), int(row[1]), int(row[2])


# -- expiry under concurrent writers -------------------------------------------------------------------


class Writers:
    """Threads that reference artifacts just ahead of expiry's cursor, each on its own connection."""

    def __init__(
        self, database_url: str, store_root: Path, scratch: Path, tag: str, collection_id: int
    ) -> None:
        self.database_url = database_url
        self.store_root = store_root
        self.scratch = scratch
        self.tag = tag
        self.collection_id = collection_id
        self.stop = threading.Event()
        self.position = 0  # index in `order` of expiry's cursor
        self.order: list[int] = []
        self.relations: list[tuple[int, int]] = []  # (new artifact, target) committed
        self.items: list[tuple[int, int]] = []  # (item, artifact) committed
        self.shared_blobs: list[tuple[int, str]] = []  # (new artifact, sha256 of a candidate's content)
        self.refused: list[int] = []  # targets refused with ExpiredReference after one re-resolve
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def run(self, number: int, batch_size: int) -> None:
        engine = make_engine(self.database_url, pool_size=1, max_overflow=0)
        sessions = make_sessionmaker(engine)
        store = ArtifactStore(self.store_root, sessions)
        rng = random.Random(number)
        fresh = dt.datetime.now(dt.UTC) + 30 * DAY
        try:
            for n in range(10**6):
                if self.stop.is_set():
                    break
                target = self.order[min(len(self.order) - 1, self.position + rng.randrange(2 * batch_size))]
                operation = rng.choice((self._relate, self._add_item, self._share_blob))
                try:
                    operation(store, sessions, target, f"{number}-{n}", fresh)
                except ExpiredReference:
                    with self.lock:
                        self.refused.append(target)
        except Exception as e:  # reported by the test, with the others
            self.errors.append(f"writer {number}: {e!r}")
        finally:
            flush_stats(engine)
            engine.dispose()

    def _relate(self, store: ArtifactStore, _: object, target: int, name: str, fresh: dt.datetime) -> None:
        artifact = NewArtifact("debian:package-build-log", _log(self.tag, name), {})
        (new,) = store.register(
            [artifact], expires_at=fresh, relations=[Relation(0, target, RelationType.RELATES_TO)]
        )
        with self.lock:
            self.relations.append((new, target))

    def _add_item(
        self, _: object, sessions: sessionmaker[Session], target: int, name: str, fresh: dt.datetime
    ) -> None:
        values = {
            "collection_id": self.collection_id,
            "name": name,
            "category": "test:item",
            "artifact_id": target,
        }

        def write(session: Session) -> int:
            return int(
                session.execute(
                    insert(CollectionItem).values(values).returning(CollectionItem.id)
                ).scalar_one()
            )

        item = write_resolving_once(sessions, write)
        with self.lock:
            self.items.append((item, target))

    def _share_blob(
        self, store: ArtifactStore, _: object, target: int, name: str, fresh: dt.datetime
    ) -> None:
        content = f"blob-{self.tag}-{target}".encode()
        local = self.scratch / f"{name}.build"
        local.write_bytes(content)
        artifact = NewArtifact(
            "debian:package-build-log",
            _log(self.tag, name),
            {"x.build": local},
        )
        (new,) = store.register([artifact], expires_at=fresh)
        local.unlink()
        with self.lock:
            self.shared_blobs.append((new, hashlib.sha256(content).hexdigest()))


def _log(source: str, name: str) -> dict[str, object]:
    return {"source": source, "version": "1.0", "architecture": "amd64", "filename": f"{name}.build"} | {
        "exit_code": 0,
        "result": "success",
    }


def test_expiry_under_writers_loses_no_reference_and_never_deadlocks(
    database_url: str, engine: Engine, sessions: sessionmaker[Session], store: ArtifactStore, tmp_path: Path
) -> None:
    tag = f"race-{uuid.uuid4().hex[:10]}"
    now = dt.datetime.now(dt.UTC)
    policy = RetentionPolicy(batch_size=20, orphan_blob_grace_s=60)
    with sessions.begin() as session:
        retaining = Collection(name=tag, category="test:retaining", retains_artifacts=True)
        session.add(retaining)
        session.flush()
        candidates = bulk_artifacts(session, store, 600, tag=tag, expires_at=now - 2 * DAY)
        live = bulk_artifacts(session, store, 20, tag=f"{tag}-live", expires_at=now + 30 * DAY)
        by_relation = candidates[7::37]
        by_item = candidates[11::41]
        chained = [(p, c) for p, c in zip(candidates[13::43], candidates[14::43], strict=True)]
        session.execute(
            insert(CollectionItem),
            [
                {
                    "collection_id": retaining.id,
                    "name": f"kept-{a}",
                    "category": "test:item",
                    "artifact_id": a,
                }
                for a in [*by_item, *(p for p, _ in chained)]
            ],
        )
        session.execute(
            text(
                "INSERT INTO artifact_relation (artifact_id, target_id, type) "
                "SELECT s, t, 'relates-to' FROM unnest(CAST(:s AS bigint[]), CAST(:t AS bigint[])) AS r(s, t)"
            ),
            {
                "s": [*(live[i % len(live)] for i in range(len(by_relation))), *(p for p, _ in chained)],
                "t": [*by_relation, *(c for _, c in chained)],
            },
        )
        collection_id = retaining.id
    must_stay = {*by_relation, *by_item, *(a for pair in chained for a in pair)}

    writers = Writers(database_url, store.root, tmp_path, tag, collection_id)
    writers.order = candidates
    before = database_stats(engine).deadlocks
    expiry_engine = make_engine(database_url, pool_size=1, max_overflow=0)
    expiry = ExpiryActivities(
        sessions=make_sessionmaker(expiry_engine), store=ArtifactStore(store.root, sessions)
    )
    threads = [threading.Thread(target=writers.run, args=(n, policy.batch_size)) for n in range(4)]
    for thread in threads:
        thread.start()
    deleted = 0
    try:
        cursor: list[str] = []
        while True:
            batch = expiry.expire_artifacts(ExpiryBatchInput(now=now, policy=policy, cursor=cursor))
            deleted += batch.changed
            if batch.done:
                break
            cursor = batch.cursor
            if int(cursor[1]) in candidates:
                writers.position = candidates.index(int(cursor[1]))
    finally:
        writers.stop.set()
        for thread in threads:
            thread.join()
        flush_stats(expiry_engine)
        expiry_engine.dispose()

    assert writers.errors == []
    referenced = [t for _, t in writers.relations] + [a for _, a in writers.items]
    assert writers.relations and writers.items and writers.shared_blobs
    assert existing(engine, referenced) == set(referenced), "an artifact referenced by a committed row went"
    assert existing(engine, list(must_stay)) == must_stay
    assert existing(engine, writers.refused) == set(), "a writer was refused a reference that exists"
    with engine.connect() as conn:
        relations = set(
            (int(a), int(b))
            for a, b in conn.execute(
                text(
                    "SELECT artifact_id, target_id FROM artifact_relation WHERE artifact_id = ANY(:ids)"
                ).bindparams(bindparam("ids", type_=IDS)),
                {"ids": [s for s, _ in writers.relations]},
            ).all()
        )
        items = set(
            (int(a), int(b))
            for a, b in conn.execute(
                text(
                    "SELECT id, artifact_id FROM collection_item "
                    "WHERE collection_id = :c AND name NOT LIKE 'kept-%'"
                ),
                {"c": collection_id},
            ).all()
        )
        files = set(
            conn.execute(
                text("SELECT sha256 FROM file WHERE sha256 = ANY(:s)").bindparams(
                    bindparam("s", type_=ARRAY(TEXT))
                ),
                {"s": [sha for _, sha in writers.shared_blobs]},
            ).scalars()
        )
    assert relations == set(writers.relations)
    assert items == set(writers.items)
    assert files == {sha for _, sha in writers.shared_blobs}
    assert all(store.blob_path(sha).exists() for sha in files)
    assert deleted > 0 and existing(engine, candidates) != set(candidates)
    assert database_stats(engine).deadlocks == before


# -- the Expiry workflow, its schedule and the operators' commands ---------------------------------------


async def _visible_as_running(client: Client, workflow_id: str) -> None:
    """Wait until visibility lists the workflow (it is what expiry asks)."""
    query = f'WorkflowId = "{workflow_id}" AND ExecutionStatus = "Running"'
    for _ in range(200):
        if [w async for w in client.list_workflows(query)]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never showed as running")


async def test_expiry_workflow_applies_every_rule(
    client: Client,
    settings: Settings,
    worker: None,
    engine: Engine,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
) -> None:
    tag = f"wf-{uuid.uuid4().hex[:10]}"
    now = dt.datetime.now(dt.UTC)
    holder = f"holder-{tag}"  # a running workflow: no worker polls its queue
    await client.start_workflow("Holder", id=holder, task_queue=f"nobody-{tag}")
    try:
        await _visible_as_running(client, holder)
        ids = _rules_fixture(sessions, store, tag, now, holder)
        policy = RetentionPolicy(qa_results_keep=3, orphan_blob_grace_s=60)
        plan = plan_expiry(sessions, policy, now=now, limit=10**6)
        removing = {row.id for row in plan.remove if row.kind == "artifact"}
        why = {row.id: row.why for row in plan.keep if row.kind == "artifact"}
        assert ids["gone"] in removing and ids["kept"] not in removing
        assert "in retaining collection test:retaining" in why[ids["kept"]]
        assert why[ids["child"]].startswith(f"reachable from artifact {ids['kept']}, in retaining collection")

        result = await run_expiry_now(
            client,
            settings.model_copy(update={"orphan_blob_grace_s": 60, "qa_results_keep": 3}),
            workflow_id=tag,
        )
    finally:
        await client.get_workflow_handle(holder).terminate()
    assert result.artifacts_deleted >= 2 and result.running_workflows >= 1
    await replay(client, tag, "expiry")

    alive = existing(engine, [ids[k] for k in ("gone", "kept", "child", "by_workflow", "recent", "released")])
    assert alive == {ids["kept"], ids["child"], ids["by_workflow"], ids["recent"]}
    assert not store.blob_path(hashlib.sha256(f"blob-{tag}-{ids['gone']}".encode()).hexdigest()).exists()
    with engine.connect() as conn:
        items: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT ci.name, coalesce(ci.artifact_id, 0) FROM collection_item ci "
                    "JOIN collection c ON c.id = ci.collection_id WHERE c.name = :tag"
                ),
                {"tag": tag},
            ).all()
        )
        qa: dict[str, bool] = dict(
            conn.execute(
                text(
                    "SELECT ci.name, ci.removed_at IS NULL FROM collection_item ci "
                    "JOIN collection c ON c.id = ci.collection_id WHERE c.name = :tag AND c.category = :qa"
                ),
                {"tag": tag, "qa": "debian:qa-results"},
            ).all()
        )
    # Removed 10 days ago: artifact released (deleted, so the reference is NULL), metadata kept.
    assert items["released"] == 0 and items["recent"] == ids["recent"] and "old-removed" not in items
    assert "young-removed" in items
    assert qa == {
        "qa-0": False,
        "qa-1": True,  # old, but its owner runs
        "qa-2": False,
        "qa-3": True,
        "qa-4": True,
        "qa-5": True,
        "other-0": True,
    }


def _rules_fixture(
    sessions: sessionmaker[Session], store: ArtifactStore, tag: str, now: dt.datetime, holder: str
) -> dict[str, int]:
    with sessions.begin() as session:
        retaining = Collection(name=tag, category="test:retaining", retains_artifacts=True)
        short = Collection(
            name=tag, category="test:short", full_history_retention_days=0, metadata_only_retention_days=1
        )
        qa = Collection(name=tag, category="debian:qa-results", retains_artifacts=True)
        session.add_all([retaining, short, qa])
        session.flush()
        gone, kept, child, by_workflow, recent, released = bulk_artifacts(
            session, store, 6, tag=tag, expires_at=now - DAY
        )
        session.execute(
            text("UPDATE artifact SET workflow_id = :w WHERE id = :id"), {"w": holder, "id": by_workflow}
        )
        session.execute(
            text(
                "INSERT INTO artifact_relation (artifact_id, target_id, type) VALUES (:s, :t, 'built-using')"
            ),
            {"s": kept, "t": child},
        )
        item = {"collection_id": retaining.id, "category": "test:item"}
        session.execute(
            insert(CollectionItem),
            [
                item | {"name": "kept", "artifact_id": kept},
                item | {"name": "recent", "artifact_id": recent, "removed_at": now - DAY},
                item | {"name": "released", "artifact_id": released, "removed_at": now - 10 * DAY},
            ],
        )
        short_item = {"collection_id": short.id, "category": "test:item"}
        session.execute(
            insert(CollectionItem),
            [
                short_item | {"name": "old-removed", "removed_at": now - 2 * DAY},
                short_item | {"name": "young-removed", "removed_at": now - DAY / 2},
            ],
        )
        key = {"task": "autopkgtest", "package": f"pkg-{tag}", "architecture": "amd64"}
        session.execute(
            insert(CollectionItem),
            [
                {
                    "collection_id": qa.id,
                    "name": f"qa-{n}",
                    "category": "debian:qa-result",
                    "created_at": now - dt.timedelta(hours=10 - n),
                    "data": key | ({"owner": holder} if n == 1 else {"owner": "finished-long-ago"}),
                }
                for n in range(6)
            ]
            + [
                {
                    "collection_id": qa.id,
                    "name": "other-0",
                    "category": "debian:qa-result",
                    "data": key | {"architecture": "arm64"},
                }
            ],
        )
    return {
        "gone": gone,
        "kept": kept,
        "child": child,
        "by_workflow": by_workflow,
        "recent": recent,
        "released": released,
    }


async def test_expiry_schedule_skips_overlaps_and_is_updated_in_place(
    client: Client, settings: Settings
) -> None:
    schedule_id = f"test-expiry-{uuid.uuid4().hex[:10]}"
    handle = await ensure_expiry_schedule(client, settings, schedule_id=schedule_id)
    try:
        changed = settings.model_copy(update={"expiry_interval_s": 600.0, "qa_results_keep": 9})
        again = await ensure_expiry_schedule(client, changed, schedule_id=schedule_id)
        assert again.id == handle.id
        description = await handle.describe()
        schedule = description.schedule
        assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert isinstance(schedule.action, ScheduleActionStartWorkflow)
        assert schedule.action.workflow == "Expiry" and schedule.action.task_queue == settings.task_queue
        assert [i.every for i in schedule.spec.intervals] == [dt.timedelta(seconds=600)]
        listed = [s.id async for s in await client.list_schedules()]
        assert listed.count(schedule_id) == 1
    finally:
        await handle.delete()


def test_db_stats_and_dry_run_commands(database_url: str, state_dir: Path) -> None:
    from client.cli import app

    env = {"DEBFLOW_DATABASE_URL": database_url, "DEBFLOW_STATE_DIR": str(state_dir)}
    runner = CliRunner()
    stats = runner.invoke(app, ["db-stats", "--json"], env=env)
    assert stats.exit_code == 0, stats.output
    tables = {t["table"]: t for t in json.loads(stats.output)["tables"]}
    assert {"artifact", "task_history", "collection_item"} <= set(tables)
    shown = runner.invoke(app, ["db-stats"], env=env)
    assert shown.exit_code == 0 and "task_history" in shown.output and "lock" in shown.output
    plan = runner.invoke(app, ["expire", "--dry-run", "--limit", "3"], env=env)
    assert plan.exit_code == 0 and "expired artifacts:" in plan.output, plan.output
    as_json = runner.invoke(app, ["expire", "--dry-run", "--json"], env=env)
    assert as_json.exit_code == 0 and "artifacts_to_delete" in json.loads(as_json.output)
