"""The results site under load: a database holding a simulated glibc-sized campaign and 1,000 upload runs,
`debflow serve` in its own process, N concurrent clients requesting package, history, campaign and status
pages and a log for a while. Prints latency percentiles, throughput, errors and the most SQL statements a
page made (the site's X-Debflow-SQL-Statements header); the last line is JSON.

The rows are written the way the activities write them (support/site_data.py: ArtifactStore.register,
store_verdicts, TaskHistoryWriter.record), not by running the simulated executor: seeding 8,770 targets
takes a minute instead of a campaign's run. Temporal is not started: the pages' running-work part shows
that Temporal cannot be read, which costs nothing per view (the live view is cached)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from activities.storage.store import ArtifactStore
from models.campaign import RunResult
from models.db import make_engine, make_sessionmaker
from support.site_data import Run, Target, seed_summary, store_campaign, store_upload
from support.site_server import free_port
from worker.postgres import temporary_database
from worker.settings import PROJECT_ROOT

SUITE, ARCH, CAMPAIGN = "bookworm", "amd64", "simulated-campaign-glibc_2.36-10-bench"
# Roughly what a glibc campaign finds: most targets pass, a few always fail, a handful regress.
MIX = [
    (RunResult.PASS, RunResult.PASS, 0.90),
    (RunResult.FAIL, RunResult.FAIL, 0.04),
    (RunResult.NEUTRAL, RunResult.NEUTRAL, 0.045),
    (RunResult.FAIL, RunResult.PASS, 0.01),
    (RunResult.PASS, RunResult.FAIL, 0.005),
]


def seed(url: str, store_dir: Path, targets: int, uploads: int) -> list[str]:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    store = ArtifactStore(store_dir, sessions)
    rng = random.Random(13)
    names = [f"rdep-{i:05d}" for i in range(targets)]
    plan = []
    for name in names:
        new, ref = rng.choices([(n, r) for n, r, _ in MIX], weights=[w for *_, w in MIX])[0]
        fail = {"smoke": "FAIL"} if new is RunResult.FAIL else {"smoke": "PASS"}
        plan.append(
            Target(
                name,
                "1.0-1",
                new,
                ref,
                new_tests=fail,
                reference_tests={"smoke": ref.value},
                new_log=f"{name}: smoke {new}\n" * 50,
                reference_log=f"{name}: smoke {ref}\n" * 50,
            )
        )
    started = time.monotonic()
    verdicts = store_campaign(
        store, sessions, campaign_id=CAMPAIGN, suite=SUITE, architecture=ARCH, targets=plan
    )
    print(
        f"seeded {len(verdicts)} targets ({2 * len(verdicts)} runs) in {time.monotonic() - started:.0f} s: "
        f"{ {str(k): v for k, v in seed_summary(verdicts).items()} }",
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(uploads):
            name = names[i % len(names)]
            store_upload(
                store,
                sessions,
                workflow_id=f"upload-{name}_1.0-{i:05d}",
                scratch=Path(scratch),
                run=Run(name, f"1.0-{i}", SUITE, ARCH, 0, "ok\n" * 100, {"smoke": "PASS"}),
            )
    print(f"seeded {uploads} upload runs in {time.monotonic() - started:.0f} s", flush=True)
    engine.dispose()
    return names


async def load(
    base: str, names: list[str], log_ids: list[int], clients: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    by_page: dict[str, list[float]] = {}
    errors, statements = 0, 0
    rng = random.Random(7)
    verdicts = [None, "REGRESSION", "PASS", "ALWAYSFAIL"]

    def path() -> tuple[str, str]:
        kind = rng.randrange(5)
        name = rng.choice(names)
        if kind == 0:
            return "package", f"/packages/{name}"
        if kind == 1:
            return "history", f"/packages/{name}/{SUITE}/{ARCH}"
        if kind == 2:
            v = rng.choice(verdicts)
            query = f"?verdict={v}" if v else f"?page={rng.randint(1, 80)}"
            return "campaign", f"/campaigns/{CAMPAIGN}{query}"
        if kind == 3:
            return "status", "/status"
        return "log", f"/artifacts/{rng.choice(log_ids)}/log"

    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, statements
        while time.monotonic() < deadline:
            page, url = path()
            started = time.monotonic()
            try:
                response = await http.get(url)
                ok = response.status_code == 200
                statements = max(statements, int(response.headers.get("x-debflow-sql-statements", 0)))
            except httpx.HTTPError:
                ok = False
            latencies.append(time.monotonic() - started)
            by_page.setdefault(page, []).append(latencies[-1])
            errors += not ok

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        began = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.monotonic() - began
    for page, found in sorted(by_page.items()):
        pq = statistics.quantiles(found, n=100)
        print(f"  {page}: {len(found)} requests, p50 {pq[49] * 1000:.0f} ms, p95 {pq[94] * 1000:.0f} ms")
    q = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "errors": errors,
        "max_statements_per_page": statements,
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=8770)
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1, help="`debflow serve --workers`")
    args = parser.parse_args()
    with (
        temporary_database("debflow-bench-pg-") as url,
        tempfile.TemporaryDirectory(prefix="debflow-bench-") as state,
    ):
        names = seed(url, Path(state) / "store", args.targets, args.uploads)
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            log_ids = [
                r[0] for r in conn.execute(text("SELECT id FROM artifact ORDER BY random() LIMIT 200"))
            ]
        engine.dispose()
        port = free_port()
        env = {
            **os.environ,
            "DEBFLOW_DATABASE_URL": url,
            "DEBFLOW_STATE_DIR": state,
            "DEBFLOW_ARTIFACT_STORE": str(Path(state) / "store"),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        server_log = open(Path(state) / "site.log", "wb")  # noqa: SIM115 — closed with the server
        command = ["serve", "--port", str(port), "--pool", "20", "--workers", str(args.workers)]
        server = subprocess.Popen(
            [sys.executable, "-m", "client", *command],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(base + "/status", timeout=5)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            cpu_before, own_before = process_cpu_s(server.pid), process_cpu_s(os.getpid())
            figures = asyncio.run(load(base, names, log_ids, args.clients, args.seconds))
            cpu, own = process_cpu_s(server.pid) - cpu_before, process_cpu_s(os.getpid()) - own_before
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
        if figures["errors"]:
            print((Path(state) / "site.log").read_text()[-3000:])  # what the server said about them
    print(
        f"{args.clients} clients for {args.seconds:.0f} s over package, history, campaign, status pages "
        f"and logs ({args.workers} `debflow serve` process(es), shared 2-core machine):"
    )
    for key, value in figures.items():
        print(f"  {key}: {value}")
    if args.workers == 1:  # the one process's CPU time; with more workers it is spread over children
        served = figures["requests_per_s"] * args.seconds
        print(f"  server CPU: {cpu:.1f} s, {cpu / served * 1000:.1f} ms per request")
    load_average, cores = os.getloadavg()[0], os.cpu_count()
    print(f"  load generator CPU: {own:.1f} s; machine load average {load_average:.1f}, {cores} cores")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
