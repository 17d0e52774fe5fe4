"""Benchmark: rows written per completed work request, and whether history stays bounded.

Runs a SIMULATED campaign (zero-duration tests) of a synthetic suite ten times on a private dev
stack, each time for a new version of the trigger, and reads PostgreSQL's own statistics
(pg_stat_user_tables) for the tuples inserted, updated and deleted. No-op updates (a row rewritten
with the values it had) are counted by a trigger this benchmark installs on every table.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # for support/

from _stack import private_stack

from activities.suites.suite import import_suite
from client.campaigns import start_campaign
from models.campaign import CampaignInput, Simulation
from models.db import make_engine, make_sessionmaker
from support.synthetic_suite import write_suite
from worker.connect import connect_temporal

COUNTER = "bench_noop_updates"
NOOP_TRIGGER = f"""
CREATE TABLE {COUNTER} (tbl text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION bench_count_noop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {COUNTER} VALUES (TG_TABLE_NAME, 1) ON CONFLICT (tbl) DO UPDATE SET n = {COUNTER}.n + 1;
  RETURN NEW;
END $$;
DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT relname FROM pg_stat_user_tables WHERE relname NOT IN ('{COUNTER}', 'alembic_version') LOOP
    EXECUTE format('CREATE TRIGGER bench_noop BEFORE UPDATE ON %I FOR EACH ROW '
                   'WHEN (OLD.* IS NOT DISTINCT FROM NEW.*) EXECUTE FUNCTION bench_count_noop()', t);
  END LOOP;
END $$;
"""
TOTALS = text(
    f"SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0) "
    f"FROM pg_stat_user_tables WHERE relname <> '{COUNTER}'"
)


def settled_totals(engine: Engine) -> tuple[int, int, int]:
    """Statistics once every backend has published its counters (they do when idle, within ~10 s)."""
    previous: tuple[int, int, int] | None = None
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            ins, upd, dele = conn.execute(TOTALS).one()
        current = (int(ins), int(upd), int(dele))
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
        time.sleep(3)


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one() or 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=600, help="dependants in the synthetic suite")
    parser.add_argument("--repetitions", type=int, default=10)
    args = parser.parse_args()

    async with private_stack(workers=1) as stack:
        engine = make_engine(stack.database_url)
        with tempfile.TemporaryDirectory() as tmp:
            sources, packages, release, keyring = write_suite(Path(tmp), "libwv", args.targets - 1)
            import_suite(
                sessions=make_sessionmaker(engine),
                name="synthetic",
                sources=sources,
                packages=[packages],
                release=release,
                keyring=keyring,
            )
        with engine.begin() as conn:
            conn.execute(text(NOOP_TRIGGER))
            conn.execute(text("SELECT pg_stat_reset()"))
        client = await connect_temporal({"target_host": stack.temporal_address, "namespace": stack.namespace})
        work_requests = 0
        history_rows: list[int] = []
        for repetition in range(1, args.repetitions + 1):
            params = CampaignInput(
                trigger_source="libwv",
                trigger_version=f"1.{repetition}",
                suite="synthetic",
                simulation=Simulation(seed=repetition),
            )
            report = await (await start_campaign(client, params, stack.settings.task_queue)).result()
            work_requests += report.tests_run
            history_rows.append(scalar(engine, "SELECT count(*) FROM task_history"))
            print(
                f"SIMULATED campaign {repetition}: {report.tests_run} test runs "
                f"({report.references_reused} references reused); task_history rows {history_rows[-1]}",
                flush=True,
            )
        inserted, updated, deleted = settled_totals(engine)
        noop = scalar(engine, f"SELECT sum(n) FROM {COUNTER}")
        sizes = {
            table: scalar(engine, f"SELECT count(*) FROM {table}")
            for table in ("task_history", "collection_item", "artifact", "file")
        }
        engine.dispose()

    per_request = (inserted + updated + deleted) / work_requests
    print(
        f"{work_requests} completed work requests; tuples inserted {inserted}, updated {updated}, "
        f"deleted {deleted}: {per_request:.2f} per work request "
        f"({inserted / work_requests:.2f} / {updated / work_requests:.2f} / {deleted / work_requests:.2f})"
    )
    print(f"no-op updates: {noop}; rows after {args.repetitions} repetitions: {sizes}")
    print(f"task_history rows after each repetition: {history_rows}")
    print(
        json.dumps(
            {
                "per_work_request": round(per_request, 2),
                "inserted_per_work_request": round(inserted / work_requests, 2),
                "updated_per_work_request": round(updated / work_requests, 2),
                "deleted_per_work_request": round(deleted / work_requests, 2),
                "noop_updates": noop,
                "work_requests": work_requests,
                "history_rows_after": history_rows[-1],
                "history_rows_by_repetition": history_rows,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
