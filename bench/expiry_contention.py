"""Benchmark: expiry of 100,000 expired artifacts (10,000 of them kept) while writers insert continuously.

A fresh embedded PostgreSQL; 100,000 expired artifacts, each with a file and an aged blob on disk; 5,000
of them are targets of relations from live artifacts, 5,000 items of a collection that retains its
artifacts, and 20,000 more hang in chains below other expired ones. Four writer threads keep registering
artifacts that reference live artifacts (and, one time in ten, an expiry candidate) and adding collection
items, first alone, then while expiry runs. Expiry calls the activities' methods directly, in a separate
process, batch after batch, as the Expiry workflow does; no Temporal server is involved.

Prints the figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))

from activities.storage.db_stats import database_stats
from activities.storage.expiry import ExpiryActivities
from activities.storage.store import (
    ArtifactStore,
    ExpiredReference,
    NewArtifact,
    Relation,
    write_resolving_once,
)
from models.db import make_engine, make_sessionmaker
from models.expiry_payloads import ExpiryBatchInput, RetentionPolicy
from models.tables import CollectionItem, RelationType
from worker.postgres import temporary_database

WRITERS = 4
LOG = {"version": "1.0", "architecture": "amd64", "exit_code": 0, "result": "success"}
BULK = text(
    """
    WITH a AS (
        INSERT INTO artifact (category, data, expires_at)
        SELECT 'debian:package-build-log', jsonb_build_object('n', g),
               CAST(:expires_at AS timestamptz) + make_interval(secs => g)
        FROM generate_series(1, :count) AS g RETURNING id
    ), f AS (
        INSERT INTO file (sha256, size)
        SELECT encode(sha256(convert_to('blob-' || id, 'UTF8')), 'hex'), 0 FROM a RETURNING id, sha256
    )
    INSERT INTO file_in_artifact (artifact_id, path, file_id)
    SELECT a.id, 'x.build', f.id FROM a
    JOIN f ON f.sha256 = encode(sha256(convert_to('blob-' || a.id, 'UTF8')), 'hex')
    RETURNING artifact_id
    """
)


def populate(engine: Engine, store: ArtifactStore, expired: int, kept: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        candidates = sorted(
            conn.execute(BULK, {"count": expired, "expires_at": now - dt.timedelta(days=2)}).scalars()
        )
        live = sorted(
            conn.execute(BULK, {"count": 2000, "expires_at": now + dt.timedelta(days=30)}).scalars()
        )
        rng = random.Random(1)
        shuffled = rng.sample(candidates, len(candidates))
        by_relation, by_item = shuffled[: kept // 2], shuffled[kept // 2 : kept]
        chained = shuffled[kept : kept + 20_000]  # parent → child, both expired: they go together
        conn.execute(
            text(
                "INSERT INTO collection (name, category, retains_artifacts) "
                "VALUES ('kept', 'bench:retaining', true), "
                "('writers', 'bench:retaining', true)"
            )
        )
        collections: dict[str, int] = dict(
            conn.execute(text("SELECT name, id FROM collection WHERE category = 'bench:retaining'")).all()
        )
        conn.execute(
            insert(CollectionItem),
            [
                {
                    "collection_id": collections["kept"],
                    "name": f"k{a}",
                    "category": "bench:item",
                    "artifact_id": a,
                }
                for a in by_item
            ],
        )
        pairs = [(live[i % len(live)], t) for i, t in enumerate(by_relation)]
        pairs += list(zip(chained[0::2], chained[1::2], strict=True))
        conn.execute(
            text(
                "INSERT INTO artifact_relation (artifact_id, target_id, type) "
                "SELECT s, t, 'relates-to' FROM unnest(CAST(:s AS bigint[]), CAST(:t AS bigint[])) AS r(s, t)"
            ),
            {"s": [s for s, _ in pairs], "t": [t for _, t in pairs]},
        )
    old = time.time() - 7 * 86400
    for artifact_id in [*candidates, *live]:
        content = f"blob-{artifact_id}".encode()
        path = store.blob_path(hashlib.sha256(content).hexdigest())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (old, old))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return {
        "now": now,
        "candidates": candidates,
        "live": live,
        "kept": set(by_relation) | set(by_item),
        "writers_collection": collections["writers"],
    }


def flush_stats(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.commit()


def run_expiry(url: str, store_root: str, now: dt.datetime, batch_size: int, results: Any) -> None:
    """The child process: expire_artifacts batch after batch until done, then the blob sweep."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    activities = ExpiryActivities(sessions=sessions, store=ArtifactStore(Path(store_root), sessions))
    policy = RetentionPolicy(batch_size=batch_size, orphan_blob_grace_s=60)
    totals = {"deleted": 0, "kept": 0, "blobs_removed": 0, "batches": 0, "slowest_batch_s": 0.0}
    started = time.perf_counter()
    cursor: list[str] = []
    while True:
        clock = time.perf_counter()
        batch = activities.expire_artifacts(ExpiryBatchInput(now=now, policy=policy, cursor=cursor))
        totals["slowest_batch_s"] = max(totals["slowest_batch_s"], time.perf_counter() - clock)
        totals["batches"] += 1
        totals["deleted"] += batch.changed
        totals["kept"] += batch.kept
        totals["blobs_removed"] += batch.blobs_removed
        if batch.done:
            break
        cursor = batch.cursor
    totals["seconds"] = time.perf_counter() - started
    flush_stats(engine)
    engine.dispose()
    results.put(totals)


class Writers:
    """Threads registering artifacts with relations, and adding collection items, timing each write."""

    def __init__(self, url: str, store_root: Path, population: dict[str, Any]) -> None:
        self.url = url
        self.store_root = store_root
        self.population = population
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (start, seconds)
        self.references: list[int] = []  # artifacts referenced by committed rows
        self.refused = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def run(self, number: int) -> None:
        engine = make_engine(self.url, pool_size=1, max_overflow=0)
        sessions = make_sessionmaker(engine)
        store = ArtifactStore(self.store_root, sessions)
        rng = random.Random(number)
        live, candidates = self.population["live"], self.population["candidates"]
        fresh = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        collection = self.population["writers_collection"]
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                target = rng.choice(candidates) if rng.random() < 0.1 else rng.choice(live)
                start = time.perf_counter()
                try:
                    if n % 2:
                        artifact = NewArtifact(
                            "debian:package-build-log", {"source": "w", "filename": f"{n}"} | LOG, {}
                        )
                        store.register(
                            [artifact],
                            expires_at=fresh,
                            relations=[Relation(0, target, RelationType.RELATES_TO)],
                        )
                    else:
                        values = {
                            "collection_id": collection,
                            "name": f"{number}-{n}",
                            "category": "bench:item",
                            "artifact_id": target,
                        }
                        write_resolving_once(sessions, _item_writer(values))
                    committed = True
                except ExpiredReference:
                    committed = False
                elapsed = time.perf_counter() - start
                with self.lock:
                    self.samples.append((start, elapsed))
                    if committed:
                        self.references.append(target)
                    else:
                        self.refused += 1
        except Exception as e:
            self.errors.append(repr(e))
        finally:
            flush_stats(engine)
            engine.dispose()


def _item_writer(values: dict[str, Any]) -> Callable[[Session], None]:
    def write(session: Session) -> None:
        session.execute(insert(CollectionItem).values(values))

    return write


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]
        if len(values) > 1
        else 0.0
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--kept", type=int, default=10_000)
    parser.add_argument("--baseline-s", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    with (
        temporary_database("debflow-bench-pg-") as url,
        tempfile.TemporaryDirectory(prefix="debflow-bench-store-") as store_dir,
    ):
        engine = make_engine(url)
        store = ArtifactStore(Path(store_dir), make_sessionmaker(engine))
        clock = time.perf_counter()
        population = populate(engine, store, args.expired, args.kept)
        print(
            f"populated {args.expired:,} expired artifacts ({args.kept:,} kept) "
            f"in {time.perf_counter() - clock:.1f} s"
        )
        before = database_stats(engine).deadlocks
        writers = Writers(url, Path(store_dir), population)
        threads = [threading.Thread(target=writers.run, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        time.sleep(args.baseline_s)  # writers alone: the baseline
        results: Any = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=run_expiry, args=(url, store_dir, population["now"], args.batch_size, results)
        )
        expiry_start = time.perf_counter()
        child.start()
        totals = results.get()
        expiry_end = time.perf_counter()
        child.join()
        writers.stop.set()
        for thread in threads:
            thread.join()
        after = database_stats(engine).deadlocks
        referenced = sorted(set(writers.references) | population["kept"])
        with engine.connect() as conn:
            alive = conn.execute(
                text("SELECT count(*) FROM artifact WHERE id = ANY(CAST(:ids AS bigint[]))"),
                {"ids": referenced},
            ).scalar_one()
            remaining = conn.execute(
                text("SELECT count(*) FROM artifact WHERE id = ANY(CAST(:ids AS bigint[]))"),
                {"ids": population["candidates"]},
            ).scalar_one()
        engine.dispose()
    baseline = [s for t, s in writers.samples if t < expiry_start]
    during = [s for t, s in writers.samples if expiry_start <= t and t + s <= expiry_end]
    figures = {
        "seconds": round(totals["seconds"], 2),
        "p99_ratio": round(percentile(during, 0.99) / percentile(baseline, 0.99), 2),
        "deadlocks": after - before,
        "lost_references": len(referenced) - alive,
        "deleted": totals["deleted"],
        "candidates_remaining": remaining,
        "batches": totals["batches"],
        "slowest_batch_s": round(totals["slowest_batch_s"], 3),
        "blobs_removed": totals["blobs_removed"],
        "writer_p50_ms": [
            round(1000 * percentile(baseline, 0.5), 2),
            round(1000 * percentile(during, 0.5), 2),
        ],
        "writer_p99_ms": [
            round(1000 * percentile(baseline, 0.99), 2),
            round(1000 * percentile(during, 0.99), 2),
        ],
        "writes": [len(baseline), len(during)],
        "refused_after_reresolve": writers.refused,
        "writer_errors": len(writers.errors),
    }
    print(
        "expiry ran its activities directly in a separate process (no Temporal server), batches of",
        args.batch_size,
    )
    print(
        f"expiry: {figures['seconds']} s, {figures['deleted']:,} deleted, "
        f"{remaining:,} of the candidates remain, {figures['batches']} batches, "
        f"slowest {figures['slowest_batch_s']} s, {figures['blobs_removed']:,} blobs removed"
    )
    print(
        f"writers p50 ms without/during expiry: {figures['writer_p50_ms']}; "
        f"p99 ms: {figures['writer_p99_ms']}; writes {figures['writes']}; "
        f"refused after one re-resolve: {writers.refused}; errors: {writers.errors[:3]}"
    )
    print(f"deadlocks {figures['deadlocks']}, lost references {figures['lost_references']}")
    print(json.dumps(figures))
    return 0 if not writers.errors else 1


if __name__ == "__main__":
    sys.exit(main())
