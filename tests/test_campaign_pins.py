"""Campaigns as britney2 uses them: pins looked up in other imported suites, given targets, and
references reused from a target's earlier version (real PostgreSQL and Temporal, synthetic suites)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.campaigns.campaign_tasks import CampaignTasks
from activities.campaigns.pinned import BadPin, pinned_files
from activities.campaigns.simulated import simulated_outcome
from activities.storage.store import ArtifactStore
from activities.suites.suite import import_suite
from models.campaign import (
    BatchInput,
    CampaignInput,
    CampaignTarget,
    ClaimReferencesInput,
    Pin,
    PlanInput,
    ReferenceKey,
    RunOutcome,
    RunResult,
    Side,
    Simulation,
    StoreReferencesInput,
    Verdict,
)
from models.tables import TaskHistory
from support.synthetic_suite import write_suite
from tests.conftest import row_counts
from tests.test_bad_input import debflow
from tests.test_pipeline import replay
from worker.settings import Settings
from workflows.campaign_batch import CampaignBatchWorkflow


def _source(name: str, version: str, binaries: str) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}{version}").hex * 2
    return (
        f"Package: {name}\nVersion: {version}\nBinary: {binaries}\nArchitecture: any all\n"
        f"Testsuite: autopkgtest\nDirectory: pool/main/{name[0]}/{name}\n"
        f"Checksums-Sha256:\n {digest} 100 {name}_{version}.dsc\n {digest} 2000 {name}_{version}.tar.xz\n"
    )


def _binary(name: str, version: str, architecture: str, source: str) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}{version}{architecture}").hex * 2
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: {architecture}\nSource: {source}\n"
        f"Filename: pool/main/{source[0]}/{source}/{name}_{version}_{architecture}.deb\n"
        f"Size: 1234\nSHA256: {digest}\n"
    )


def _import(
    sessions: sessionmaker[Session], root: Path, name: str, sources: list[str], **packages: list[str]
) -> str:
    root.mkdir(parents=True)
    (root / "Sources").write_text("\n".join(sources))
    paths = []
    for architecture, paragraphs in packages.items():
        (root / f"Packages-{architecture}").write_text("\n".join(paragraphs))
        paths.append(root / f"Packages-{architecture}")
    import_suite(
        sessions=sessions,
        name=name,
        sources=root / "Sources",
        packages=paths,
        insecure_unsigned_release=True,
        mirror=(root / "mirror").as_uri(),
    )
    return name


@pytest.fixture(scope="module")
def pin_suite(sessions: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> str:
    """An `unstable` with libfoo 1.1 (libfoo1 on amd64 and arm64, libfoo-doc for all) and bar 2.0."""
    root = tmp_path_factory.mktemp("pins")
    name = f"unstable-{uuid.uuid4().hex[:8]}"
    return _import(
        sessions,
        root / "suite",
        name,
        [_source("libfoo", "1.1", "libfoo1, libfoo-doc"), _source("bar", "2.0", "bar-utils, bar-data")],
        amd64=[
            _binary("libfoo1", "1.1", "amd64", "libfoo"),
            _binary("libfoo-doc", "1.1", "all", "libfoo"),
            _binary("bar-utils", "2.0", "amd64", "bar"),
            _binary("bar-data", "2.0", "all", "bar"),
        ],
        arm64=[_binary("libfoo1", "1.1", "arm64", "libfoo")],
    )


def test_a_pin_takes_the_newest_build_of_its_sources_and_binaries(
    sessions: sessionmaker[Session], pin_suite: str
) -> None:
    with sessions() as session:
        found = pinned_files(session, Pin(packages=["bar-utils", "src:libfoo"], suite=pin_suite), "amd64")
        on_arm = pinned_files(session, Pin(packages=["src:libfoo"], suite=pin_suite), "arm64")
    assert [f.name for f in found.binaries] == [
        "bar-utils_2.0_amd64.deb",
        "libfoo-doc_1.1_all.deb",
        "libfoo1_1.1_amd64.deb",
    ]
    assert found.mirror.startswith("file://") and found.mirror.endswith("/mirror")
    assert found.binaries[2].path == "pool/main/l/libfoo/libfoo1_1.1_amd64.deb"
    # A pinned target's tests: the pin suite's source version and its files, the .dsc first.
    assert set(found.sources) == {"libfoo"} and found.sources["libfoo"].version == "1.1"
    assert [f.name for f in found.sources["libfoo"].files] == ["libfoo_1.1.dsc", "libfoo_1.1.tar.xz"]
    assert [f.name for f in on_arm.binaries] == ["libfoo-doc_1.1_all.deb", "libfoo1_1.1_arm64.deb"]


@pytest.mark.parametrize(
    ("packages", "suite", "message"),
    [
        (["src:nosuch"], None, "has no source package nosuch"),
        (["nosuch-bin"], None, "has no binary package nosuch-bin for amd64"),
        (["src:libfoo"], "never-imported", "pin-packages suite 'never-imported' is not imported"),
    ],
)
def test_a_pin_naming_what_its_suite_lacks_is_a_bad_pin(
    sessions: sessionmaker[Session], pin_suite: str, packages: list[str], suite: str | None, message: str
) -> None:
    with sessions() as session, pytest.raises(BadPin) as raised:
        pinned_files(session, Pin(packages=packages, suite=suite or pin_suite), "amd64")
    assert message in str(raised.value)
    if suite is None:
        assert pin_suite in str(raised.value)


def _tasks(sessions: sessionmaker[Session], settings: Settings) -> CampaignTasks:
    return CampaignTasks(
        sessions=sessions,
        store=ArtifactStore(settings.store_dir, sessions),
        scratch_dir=settings.scratch_dir,
        expiration_days=1,
    )


def test_a_plan_with_given_targets_tests_those_at_their_suite_versions(
    sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    trigger = f"libgiven{uuid.uuid4().hex[:6]}"
    sources, packages, release, keyring = write_suite(tmp_path, trigger, dependants=3)
    suite = f"test-{trigger}"
    import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], release=release, keyring=keyring
    )
    tasks, env = _tasks(sessions, settings), ActivityEnvironment()
    given = [f"{trigger}-user0001", f"{trigger}-untested"]
    plan = env.run(
        tasks.plan_campaign,
        PlanInput(
            trigger_source=trigger, trigger_binaries=[], suite=suite, architecture="amd64", targets=given
        ),
    )
    # Not the reverse dependencies: exactly the given sources, even one without tests (NEUTRAL then).
    assert [(t.source, t.version) for t in plan.targets] == [
        (f"{trigger}-untested", "1"),
        (f"{trigger}-user0001", "2.1"),
    ]
    with pytest.raises(ApplicationError) as raised:
        env.run(
            tasks.plan_campaign,
            PlanInput(
                trigger_source=trigger,
                trigger_binaries=[],
                suite=suite,
                architecture="amd64",
                targets=["nope"],
            ),
        )
    assert raised.value.non_retryable and f"suite {suite!r} has no source package nope" in str(raised.value)


async def _store_references(tasks: CampaignTasks, keys: list[ReferenceKey], outcome: RunOutcome) -> None:
    env = ActivityEnvironment()
    await env.run(
        tasks.claim_references, ClaimReferencesInput(keys=keys, owner="earlier", max_age_days=30, lease_s=60)
    )
    env.run(
        tasks.store_reference_results,
        StoreReferencesInput(owner="earlier", results={k.name: outcome for k in keys}, keys=keys),
    )


def _key(source: str, version: str, state: str) -> ReferenceKey:
    return ReferenceKey(
        source=source, version=version, architecture="amd64", suite="bookworm", suite_state=state
    )


async def test_a_claim_reuses_an_earlier_version_only_when_asked(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    tasks, env = _tasks(sessions, settings), ActivityEnvironment()
    prefix = uuid.uuid4().hex[:8]
    old_state, state = "a" * 64, "b" * 64
    older, newer = f"older-{prefix}", f"newer-{prefix}"
    passed = RunOutcome(result=RunResult.PASS, exit_code=0, tests={"t": "PASS"})
    await _store_references(tasks, [_key(older, "0.9", old_state), _key(newer, "2.0", old_state)], passed)
    keys = [_key(older, "1.0", state), _key(newer, "1.0", state)]

    async def claim(previous: bool, owner: str) -> tuple[set[str], dict[str, str], list[str]]:
        found = await env.run(
            tasks.claim_references,
            ClaimReferencesInput(keys=keys, owner=owner, max_age_days=30, lease_s=60, previous=previous),
        )
        return set(found.found), found.previous, found.claimed

    # 0.9 stands in for 1.0 until 1.0 has its own; 2.0 is no reference for 1.0 (a suite gone back).
    assert await claim(True, f"a-{prefix}") == ({keys[0].name}, {keys[0].name: "0.9"}, [keys[1].name])
    # Asked for fresh references, the earlier version is not used.
    assert (await claim(False, f"b-{prefix}"))[2] == [keys[0].name]


def _behaving(prefix: str, simulation: Simulation, new: RunResult, reference: RunResult) -> str:
    """A target name the simulated executor gives these outcomes (new side, twice; reference side)."""
    for i in range(10_000):
        name = f"{prefix}-{i}"
        outcomes = [
            simulated_outcome(simulation, name, "1.0", "amd64", side, attempt)[0]
            for side, attempt in ((Side.NEW, 1), (Side.NEW, 2), (Side.REFERENCE, 1))
        ]
        if outcomes == [new, new, reference]:
            return name
    raise AssertionError("no such target")


async def test_a_batch_reuses_an_earlier_reference_and_runs_its_own_before_a_regression(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session]
) -> None:
    simulation, prefix = Simulation(seed=11), f"earlier-{uuid.uuid4().hex[:8]}"
    passing = _behaving(prefix, simulation, RunResult.PASS, RunResult.PASS)
    failing = _behaving(prefix, simulation, RunResult.FAIL, RunResult.FAIL)
    state = uuid.uuid4().hex * 2
    # Both passed at 0.9 in an earlier suite state; the failing one now fails on both sides.
    passed = RunOutcome(result=RunResult.PASS, exit_code=0, tests={"simulated-test-0": "PASS"})
    await _store_references(
        _tasks(sessions, settings), [_key(t, "0.9", "c" * 64) for t in (passing, failing)], passed
    )
    targets = [CampaignTarget(source=t, version="1.0") for t in (passing, failing)]

    async def batch(fresh: bool) -> tuple[str, dict[str, Verdict], dict[str, str | None], list[str]]:
        batch_id = f"{prefix}-{'fresh' if fresh else 'reuse'}"
        campaign = CampaignInput(
            trigger_source="trigger", trigger_version="2.0", simulation=simulation, fresh_references=fresh
        )
        result = await client.execute_workflow(
            CampaignBatchWorkflow.run,
            BatchInput(
                campaign=campaign,
                campaign_id=batch_id,
                suite_state=state,
                architecture="amd64",
                targets=targets,
            ),
            id=batch_id,
            task_queue=settings.task_queue,
        )
        with sessions() as session:
            ran = session.scalars(
                select(TaskHistory.subject).where(
                    TaskHistory.workflow_id == batch_id, TaskHistory.context.endswith("/reference")
                )
            ).all()
        verdicts = {v.source: v.verdict for v in result.notable}
        versions = {v.source: v.reference_version for v in result.notable}
        return batch_id, verdicts, versions, sorted(ran)

    batch_id, verdicts, versions, ran = await batch(fresh=False)
    # The passing target's 0.9 result answers for 1.0: PASS (not notable), no reference run. The failing
    # one's new FAIL against 0.9's PASS is no regression yet: its own reference runs, and fails too.
    assert verdicts == {failing: Verdict.ALWAYSFAIL} and versions == {failing: None}
    assert ran == [failing]
    await replay(client, batch_id, "campaign-batch-previous-references")
    # Asked for fresh references, the passing target runs its own (the failing one's exists by now).
    _, _, _, ran = await batch(fresh=True)
    assert ran == [passing]


def test_bad_campaign_options_are_refused_before_anything_starts(
    settings: Settings, engine: Engine, pin_suite: str
) -> None:
    cases = [
        (["--pin", "src:foo"], "invalid --pin 'src:foo': PACKAGES=SUITE"),
        (["--pin", "src:Foo=unstable"], "not a package name"),
        (["--pin", "src:foo=unstable", "--pin", "bar=unstable"], "names suite 'unstable' twice"),
        (["--pin", "src:foo=never-imported"], "pin-packages suite 'never-imported' is not imported"),
        (["--pin", f"src:nosuch={pin_suite}"], f"suite {pin_suite!r} has no source package nosuch"),
        (["--pin", f"src:libfoo={pin_suite}", "--target", "Bad!"], "invalid target 'Bad!'"),
        (["glibc", "--simulated", "--pin", f"src:libfoo={pin_suite}"], "takes no --upload and no --pin"),
        (
            ["--pin", f"src:libfoo={pin_suite}", "--suite", pin_suite, "--target", "nope"],
            "has no source package nope",
        ),
    ]
    before = row_counts(engine)
    for options, message in cases:
        result = debflow(["campaign", *options], settings)
        assert result.returncode == 2, (options, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (options, lines)
    assert row_counts(engine) == before
