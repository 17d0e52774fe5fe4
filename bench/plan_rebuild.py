"""Import bookworm, then plan glibc's rebuild campaign: its reverse build-dependencies, wall time and SQL
statements. docs/rebuilds.md tells how the count was checked by hand against the Sources file."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _database import BOOKWORM

from activities.suites.build_dependencies import rebuild_targets
from activities.suites.suite import import_suite, source_binaries
from models.db import make_engine, make_sessionmaker
from worker.postgres import temporary_database

TRIGGER = "glibc"
WARM_RUNS = 5  # the first plan pays for cold caches; a worker plans many


def main() -> None:
    with temporary_database("debflow-bench-pg-") as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        stats = import_suite(
            sessions=sessions,
            name="bookworm",
            sources=BOOKWORM / "Sources.xz",
            packages=[BOOKWORM / "Packages_amd64.xz"],
            release=BOOKWORM / "InRelease",  # verified against Debian's archive keyring
        )
        print(f"imported bookworm ({stats.inserted} items) in {stats.seconds:.1f} s")
        statements: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def count(*args: Any) -> None:
            statements.append(args[2])

        times = []
        for _ in range(1 + WARM_RUNS):
            started = time.monotonic()
            with sessions() as session:
                version, binaries = source_binaries(session=session, suite="bookworm", source=TRIGGER)
                targets = rebuild_targets(
                    session=session,
                    suite="bookworm",
                    binaries=binaries,
                    architecture="amd64",
                    exclude_source=TRIGGER,
                )
            times.append(time.monotonic() - started)
            if len(times) == 1:  # the statements of one plan
                event.remove(engine, "before_cursor_execute", count)
        with sessions() as session:
            archive = rebuild_targets(session=session, suite="bookworm", binaries=[], all_sources=True)
        engine.dispose()
    seconds, warm = times[0], statistics.median(times[1:])
    print(f"{TRIGGER} {version}: {len(binaries)} binaries ({' '.join(binaries)})")
    print(f"{len(targets)} rebuild targets on amd64 (sources whose Build-Depends* name them)")
    print(f"the whole archive: {len(archive)} rebuild targets on amd64")
    print(
        f"planned in {seconds:.2f} s (then {warm:.2f} s, median of {WARM_RUNS}) "
        f"with {len(statements)} SQL statements"
    )
    if len(sys.argv) > 1:  # a file to write the target names to, for the hand count (docs/rebuilds.md)
        Path(sys.argv[1]).write_text("".join(f"{t.source}\n" for t in targets))
    print(
        json.dumps(
            {
                "targets": len(targets),
                "seconds": round(seconds, 3),
                "warm_seconds": round(warm, 3),
                "statements": len(statements),
                "archive_targets": len(archive),
            }
        )
    )


if __name__ == "__main__":
    main()
