"""hello-debflow's tests with real autopkgtest on the unshare executor, two ways in the same run: an overlay
clone of the prepared environment (activities/tools/testbeds.py) and today's tarball path (unpack, update
the lists from the mirror, install apt-utils). One warm-up each, then --runs runs on --slots slots.

Figures per run, from autopkgtest's own progress lines as they arrive: total; setup (start to the first
test's body); reset (end of one test's body to the start of the next's: revert and dependencies);
test body; bytes fetched from the mirror (prepared: the pool cache's downloads; tarball: apt's
"Fetched" lines). Last line JSON, for the prepared path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from debian.deb822 import Deb822

from activities.campaigns.archive_files import PoolCache, PoolFile
from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite
from activities.tools.environments import EnvironmentStore, make_tarball
from activities.tools.executors import Hooks, host_architecture
from activities.tools.testbeds import Testbeds
from activities.tools.unshare import UnshareExecutor
from client.local_archive import build_local_archive
from models.db import make_engine, make_sessionmaker
from worker.postgres import temporary_database
from worker.settings import PROJECT_ROOT

BASE = "bookworm"
SUITE = "bench-examples"
BODY_START = re.compile(r"test (\S+): \[-{10,}$")
BODY_END = re.compile(r"test (\S+): -{10,}\]$")
FETCHED = re.compile(r"^Fetched ([\d.]+) ([kMG]?)B in", re.MULTILINE)
UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


class CountingPoolCache(PoolCache):
    """The worker's pool cache, counting what it downloads from the mirror."""

    downloaded = 0

    def _download(self, mirror: str, wanted: PoolFile, cached: Path) -> None:
        super()._download(mirror, wanted, cached)
        CountingPoolCache.downloaded += wanted.size


@dataclass(frozen=True)
class Figures:
    total_s: float
    setup_s: float
    reset_s: float
    body_s: float
    mirror_bytes: float


def machine_mirror() -> str:
    """The mirror of this machine's apt configuration for the base release (never written anywhere)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in Deb822.iter_paragraphs(path.read_text()):
            if "deb" in stanza.get("Types", "").split() and BASE in stanza.get("Suites", "").split():
                return str(stanza["URIs"].split()[0])
    sources_list = Path("/etc/apt/sources.list")
    for line in sources_list.read_text().splitlines() if sources_list.exists() else []:
        words = [w for w in line.split() if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == BASE:
            return words[1]
    raise SystemExit(f"error: this machine's apt configuration names no mirror for {BASE}")


DEBUG: list[str] = []  # ["--debug"] with --debug: autopkgtest's commands, timed, in each run's stream.log


def timed_run(runner: UnshareExecutor, dsc: Path, debs: list[Path], work: Path) -> Figures:
    work.mkdir(parents=True)
    started = time.monotonic()
    testbed = runner.testbed(dsc, debs, suite=SUITE, workdir=work, hooks=Hooks())
    resolved = time.monotonic() - started
    argv = [
        "autopkgtest",
        *DEBUG,
        *testbed.options,
        "--output-dir",
        str(work / "out"),
        *map(str, debs),
        str(dsc),
    ]
    process = subprocess.Popen(
        [*argv, "--", *testbed.virt_server],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    starts: list[float] = []
    ends: list[float] = []
    stream = []
    for line in process.stdout:  # autopkgtest's progress (stderr) and the tests' output
        now = time.monotonic() - started
        stream.append(f"{now:.3f} {line}")
        if BODY_START.search(line):
            starts.append(now)
        elif BODY_END.search(line):
            ends.append(now)
    if process.wait() != 0:
        raise SystemExit(f"error: autopkgtest failed (exit {process.returncode}), see {work}")
    total = time.monotonic() - started
    (work / "stream.log").write_text(f"{resolved:.3f} testbed given\n" + "".join(stream))
    if len(ends) != len(starts) or not starts:
        raise SystemExit(f"error: autopkgtest ran no test bodies that this benchmark recognises, see {work}")
    log = (work / "out" / "log").read_text(errors="replace")
    fetched = sum(float(n) * UNITS[unit] for n, unit in FETCHED.findall(log))
    if not DEBUG:
        shutil.rmtree(work, ignore_errors=True)
    return Figures(
        total_s=total,
        setup_s=starts[0],
        reset_s=starts[1] - ends[0] if len(starts) > 1 else 0.0,
        body_s=sum(e - s for s, e in zip(starts, ends, strict=False)),
        mirror_bytes=fetched,
    )


def measure(
    name: str, runner: UnshareExecutor, dsc: Path, debs: list[Path], scratch: Path, runs: int, slots: int
) -> dict[str, float]:
    clock = time.monotonic()
    timed_run(runner, dsc, debs, scratch / f"{name}-warm-up")
    print(f"{name}: warm-up {time.monotonic() - clock:.1f} s", flush=True)
    downloaded = CountingPoolCache.downloaded
    with concurrent.futures.ThreadPoolExecutor(slots) as pool:
        figures = list(pool.map(lambda i: timed_run(runner, dsc, debs, scratch / f"{name}-{i}"), range(runs)))
    pool_bytes = (CountingPoolCache.downloaded - downloaded) / runs
    result = {
        "runs": runs,
        "median_total_s": round(statistics.median(f.total_s for f in figures), 2),
        "median_setup_s": round(statistics.median(f.setup_s for f in figures), 2),
        "median_reset_s": round(statistics.median(f.reset_s for f in figures), 2),
        "test_body_s": round(statistics.median(f.body_s for f in figures), 2),
        "mirror_bytes_per_run": round(statistics.mean(f.mirror_bytes for f in figures) + pool_bytes),
    }
    print(f"{name}: {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tarball-runs", type=int, help="runs of today's tarball path (default: --runs)")
    parser.add_argument("--tarball", type=Path, help="a bookworm buildd tarball (default: the tests' cache)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (to look into runs)")
    parser.add_argument("--debug", action="store_true", help="keep each run's directory, autopkgtest --debug")
    args = parser.parse_args()
    if args.runs < 1 or args.slots < 1:
        raise SystemExit("error: --runs and --slots must be at least 1")
    mirror, architecture = machine_mirror(), host_architecture()
    DEBUG.extend(["--debug"] if args.debug else [])
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="debflow-bench-testbed-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        tarball = args.tarball or cached_tarball(mirror, architecture, scratch)
        with temporary_database("debflow-bench-pg-") as url:
            sessions = make_sessionmaker(make_engine(url))
            store = ArtifactStore(scratch / "artifacts", sessions)
            environments = EnvironmentStore(
                store=store,
                mirror=mirror,
                cache_dir=scratch / "environments",
                max_age_days=7,
                expiration_days=30,
            )
            environments.import_tarball(tarball, SUITE, architecture)  # the tarball path's "suite"
            environments.import_tarball(tarball, BASE, architecture)
            archive = build_local_archive(
                scratch / "mirror", [PROJECT_ROOT / "examples" / "hello-debflow"], suite=SUITE
            )
            import_suite(
                sessions=sessions,
                name=SUITE,
                sources=archive.sources,
                packages=archive.packages,
                release=archive.release,
                keyring=archive.keyring,
                mirror=archive.mirror,
            )
            dsc = next((archive.root / "pool").rglob("*.dsc"))
            debs = sorted((archive.root / "pool").rglob("*.deb"))
            testbeds = Testbeds(
                root=scratch / "testbeds",
                pool_cache=CountingPoolCache(scratch / "pool-cache"),
                base_mirror=mirror,
                base_suite=BASE,
            )
            prepared = measure(
                "prepared", UnshareExecutor(environments, testbeds), dsc, debs, scratch, args.runs, args.slots
            )
            measure(
                "tarball",
                UnshareExecutor(environments),
                dsc,
                debs,
                scratch,
                args.tarball_runs or args.runs,
                args.slots,
            )
    finally:
        if args.keep is None:
            subprocess.run(
                ["unshare", "--map-auto", "--map-root-user", "rm", "-rf", str(scratch)], check=False
            )
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(prepared))


def cached_tarball(mirror: str, architecture: str, scratch: Path) -> Path:
    """The tests' cached tarball of the base release when there is one, else a new one (about a minute)."""
    cache = Path.home() / ".cache" / "debflow-tests"
    found = sorted(cache.glob(f"{BASE}-{architecture}-*.tar.zst"), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    made = scratch / f"{BASE}-{architecture}.tar.zst"
    make_tarball(BASE, architecture, mirror, made, Hooks())
    return made


if __name__ == "__main__":
    main()
