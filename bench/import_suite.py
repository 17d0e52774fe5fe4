"""Import bookworm into a fresh database, then import it again unchanged: wall time and rows written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlalchemy import Engine, NullPool, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _database import BOOKWORM

from activities.suites.suite import import_suite
from models.db import make_engine, make_sessionmaker
from worker.postgres import temporary_database

TABLES = ("collection", "collection_item", "suite_relation")


def rows_written(engine: Engine) -> int:
    """Rows inserted, updated or deleted in the suite tables since the server started."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
                    " WHERE schemaname = 'public' AND relname = ANY(:tables)"
                ),
                {"tables": list(TABLES)},
            ).scalar_one()
        )


def main() -> None:
    sources, packages, release = (
        BOOKWORM / "Sources.xz",
        [BOOKWORM / "Packages_amd64.xz"],
        BOOKWORM / "InRelease",
    )
    with temporary_database("debflow-bench-pg-") as url:
        # No pool: each import's connection closes at its end, and a closing backend flushes its statistics.
        engine = make_engine(url, poolclass=NullPool)
        sessions = make_sessionmaker(engine)
        first = import_suite(
            sessions=sessions, name="bookworm", sources=sources, packages=packages, release=release
        )
        before = rows_written(engine)
        # Also a check of the measurement itself: these statistics must already show the first import.
        print(f"import: {first.inserted} items, {before} rows written in {first.seconds:.1f} s")
        again = import_suite(
            sessions=sessions, name="bookworm", sources=sources, packages=packages, release=release
        )
        written = rows_written(engine) - before
        print(
            f"re-import: {again.unchanged} items unchanged, {written} rows written in {again.seconds:.1f} s"
        )
        engine.dispose()
    print(
        json.dumps(
            {
                "seconds": round(first.seconds, 2),
                "reimport_seconds": round(again.seconds, 2),
                "reimport_rows_written": written,
            }
        )
    )


if __name__ == "__main__":
    main()
