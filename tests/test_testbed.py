"""Prepared testbeds with the real tools: overlay clones of a prepared environment per suite state, packages
from the run's local repository, no network unless a test declares needs-internet.

The suite is a local archive (client/local_archive.py) imported like any other: its environment is the base
release's tarball (cached across sessions by tests/test_unshare.py) with the suite's index added.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from activities.campaigns.archive_files import PoolCache
from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite
from activities.tools.environments import EnvironmentStore
from activities.tools.executors import Hooks
from activities.tools.testbed_inputs import suite_index
from activities.tools.testbeds import Testbeds
from activities.tools.unshare import UnshareExecutor
from client.local_archive import LocalArchive, build_local_archive, run
from tests.test_unshare import ARCH, SUITE, cached_tarball  # noqa: F401 (a fixture)
from worker.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.slow

EXAMPLES = PROJECT_ROOT / "examples"
PROBE = "probe-debflow"
# Each test checks what the testbed looks like, then changes it for whoever comes next.
PROBE_TESTS = {
    # A root test that writes outside its tree and marks the testbed broken: autopkgtest reverts after it.
    "writes-outside": (
        "needs-root, breaks-testbed",
        "test ! -e /etc/debflow-leak\necho leaked > /etc/debflow-leak\necho leaked > /var/tmp/debflow-leak\n",
    ),
    "sees-a-clean-testbed": ("needs-root", "test ! -e /etc/debflow-leak\ntest ! -e /var/tmp/debflow-leak\n"),
    # /proc is the testbed's own, so /proc/net/dev lists the devices of its network namespace.
    "has-only-loopback": ("", 'test "$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " ")" = lo\n'),
}
INTERNET_TEST = ("needs-internet", 'test "$(tail -n +3 /proc/net/dev | wc -l)" -gt 1\n')


def probe_tree(root: Path, tests: dict[str, tuple[str, str]], version: str = "1.0") -> Path:
    """A package whose tests look at the testbed they run in."""
    tree = root / PROBE
    control = "".join(
        f"Tests: {name}\nDepends: @\n" + (f"Restrictions: {restrictions}\n" if restrictions else "") + "\n"
        for name, (restrictions, _) in tests.items()
    )
    files = {
        "debian/control": f"Source: {PROBE}\nSection: misc\nPriority: optional\n"
        "Maintainer: debflow developers <debflow@example.org>\nBuild-Depends: debhelper-compat (= 13)\n"
        f"Standards-Version: 4.6.2\nRules-Requires-Root: no\n\nPackage: {PROBE}\nArchitecture: all\n"
        "Depends: ${misc:Depends}\nDescription: looks at its testbed (debflow tests)\n"
        " Its tests check what a testbed leaks.\n",
        "debian/changelog": f"{PROBE} ({version}) unstable; urgency=medium\n\n  * Release.\n\n"
        " -- debflow developers <debflow@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
        "debian/rules": "#!/usr/bin/make -f\n%:\n\tdh $@\n",
        "debian/source/format": "3.0 (native)\n",
        "debian/tests/control": control,
        **{f"debian/tests/{name}": f"#!/bin/sh\nset -e\n{body}" for name, (_, body) in tests.items()},
    }
    for name, content in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(content)
        if name == "debian/rules" or (name.startswith("debian/tests/") and name != "debian/tests/control"):
            (tree / name).chmod(0o755)
    return tree


def import_archive(sessions: sessionmaker[Session], archive: LocalArchive) -> None:
    import_suite(
        sessions=sessions,
        name=archive.suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
        mirror=archive.mirror,
    )


@pytest.fixture(scope="session")
def testbeds_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Prepared environments shared by the tests of a session, as by the activities of a worker host."""
    yield tmp_path_factory.mktemp("testbeds")


def executor(
    settings: Settings, sessions: sessionmaker[Session], tarball: tuple[Path, str], testbeds_dir: Path
) -> tuple[UnshareExecutor, Testbeds]:
    path, mirror = tarball
    environments = EnvironmentStore(
        store=ArtifactStore(settings.store_dir, sessions),
        mirror=mirror,
        cache_dir=testbeds_dir / "environments",
        max_age_days=7,
        expiration_days=30,
    )
    if environments.find(SUITE, ARCH) is None:
        environments.import_tarball(path, SUITE, ARCH)
    testbeds = Testbeds(
        root=testbeds_dir / "prepared",
        pool_cache=PoolCache(testbeds_dir / "pool-cache"),
        base_mirror=mirror,
        base_suite=SUITE,
    )
    return UnshareExecutor(environments, testbeds), testbeds


def run_tests(
    runner: UnshareExecutor, dsc: Path, debs: list[Path], suite: str, work: Path
) -> tuple[int, str]:
    work.mkdir(parents=True)
    tested = runner.autopkgtest(
        dsc,
        debs,
        suite=suite,
        architecture=ARCH,
        workdir=work,
        output_dir=work / "out",
        summary=work / "summary",
        log=work / "log",
        hooks=Hooks(),
    )
    summary = (work / "summary").read_text() if (work / "summary").exists() else ""
    return tested.outcome.returncode, summary + (work / "log").read_text(errors="replace")[-3000:]


def test_a_run_never_sees_what_an_earlier_test_or_run_wrote(
    settings: Settings,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    cached_tarball: tuple[Path, str],  # noqa: F811
    testbeds_dir: Path,
) -> None:
    suite = f"probe-{uuid.uuid4().hex[:8]}"
    archive = build_local_archive(
        tmp_path / "mirror", [probe_tree(tmp_path / "trees", PROBE_TESTS)], suite=suite
    )
    import_archive(sessions, archive)
    runner, testbeds = executor(settings, sessions, cached_tarball, testbeds_dir)
    dsc = next((archive.root / "pool").rglob("*.dsc"))
    debs = sorted((archive.root / "pool").rglob("*.deb"))

    for i in range(2):  # the second run starts from the same prepared tree the first ran on
        code, log = run_tests(runner, dsc, debs, suite, tmp_path / f"offline-{i}")
        assert code == 0, log
        for name in PROBE_TESTS:
            assert f"{name} PASS" in " ".join(log.split()), log
    # A test that declares needs-internet gets the host's network (and its run with it).
    online = probe_tree(tmp_path / "online", {"reaches-the-network": INTERNET_TEST})
    run(["dpkg-source", "-b", online.name], online.parent)
    code, log = run_tests(runner, online.parent / f"{PROBE}_1.0.dsc", debs, suite, tmp_path / "online-run")
    assert code == 0, log
    assert "reaches-the-network PASS" in " ".join(log.split()), log

    index = suite_index(sessions, suite, ARCH)
    assert index is not None
    (prepared,) = [
        p
        for p in testbeds.root.iterdir()
        if (p / "ready").exists() and index.packages() in (p / "repo" / "Packages").read_bytes()
    ]
    assert not (prepared / "tree" / "etc" / "debflow-leak").exists()
    assert not (prepared / "tree" / "var" / "tmp" / "debflow-leak").exists()


def test_a_prepared_environment_is_remade_when_its_suite_state_changes(
    settings: Settings,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    cached_tarball: tuple[Path, str],  # noqa: F811
    testbeds_dir: Path,
) -> None:
    suite = f"state-{uuid.uuid4().hex[:8]}"
    first = build_local_archive(tmp_path / "one", [EXAMPLES / "hello-debflow"], suite=suite)
    import_archive(sessions, first)
    runner, testbeds = executor(settings, sessions, cached_tarball, testbeds_dir)
    environment = runner.environments.get(SUITE, ARCH, tmp_path, Hooks())
    before = suite_index(sessions, suite, ARCH)
    assert before is not None
    prepared, made = testbeds.prepare(environment.path, environment.artifact_id, before, ARCH, Hooks())
    again, made_again = testbeds.prepare(environment.path, environment.artifact_id, before, ARCH, Hooks())
    assert made and not made_again and again == prepared
    assert b"Package: greeter-debflow" not in prepared.packages.read_bytes()

    second = build_local_archive(
        tmp_path / "two", [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow"], suite=suite
    )
    import_archive(sessions, second)
    after = suite_index(sessions, suite, ARCH)
    assert after is not None and after.state != before.state
    remade, made = testbeds.prepare(environment.path, environment.artifact_id, after, ARCH, Hooks())
    assert made and remade.root != prepared.root
    assert b"Package: greeter-debflow" in remade.packages.read_bytes()
    # apt in the new tree knows the new package from the lists written at preparation, offline.
    shown = testbeds.in_tree(
        remade,
        "apt-cache show greeter-debflow",
        network=False,
        hooks=Hooks(),
        log=tmp_path / "log",
        clone=tmp_path / "clone",
    )
    assert "Package: greeter-debflow" in shown
