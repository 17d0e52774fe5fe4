"""Rebuild campaigns: which build-dependencies count, a simulated rebuild through the campaign workflows,
bad input, and a real rebuild on a local archive whose upload breaks a build-dependent's build."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.storage.store import ArtifactStore
from activities.suites.build_dependencies import applies_on, rebuild_targets
from activities.suites.suite import import_suite
from client.api import submit_upload
from client.campaigns import campaign_for_upload, start_campaign
from client.local_archive import LocalArchive, build_local_archive, hello_with_a_new_greeting, run, variant
from models.campaign import CampaignInput, CampaignKind, RunResult, Simulation, Verdict
from models.payloads import Check, TaskResult
from tests.conftest import subprocess_env
from tests.local_campaign import host_dpkg_lock, left_on_the_host
from tests.test_pipeline import replay
from worker.settings import PROJECT_ROOT, Settings

EXAMPLES = PROJECT_ROOT / "examples"
# One source paragraph per rule of activities/suites/build_dependencies.py; libfoo builds libfoo-dev,
# which provides libfoo-api.
RULES = {
    "alternative": "Build-Depends: debhelper-compat (= 13), other-dev | libfoo-dev (>= 2)",
    "arm-only": "Build-Depends: debhelper-compat (= 13), libfoo-dev [arm64]",
    "not-on-arm": "Build-Depends-Arch: libfoo-dev:native [!arm64 !armhf]",
    "wildcard": "Build-Depends: libfoo-dev [linux-any]",
    "stage1-only": "Build-Depends: libfoo-dev <stage1>",
    "stage1-and-cross": "Build-Depends: libfoo-dev <stage1 !cross>",
    "unless-nocheck": "Build-Depends-Indep: libfoo-dev <!nocheck>",
    "virtual": "Build-Depends: libfoo-api",
    "unrelated": "Build-Depends: debhelper-compat (= 13)",
    "arm-source": "Build-Depends: libfoo-dev\nArchitecture-Override: arm64",
}


def write_rules_suite(root: Path) -> tuple[Path, Path]:
    paragraphs = ["Package: libfoo\nVersion: 1.0\nBinary: libfoo-dev\nArchitecture: any\n"]
    for name, fields in RULES.items():
        arch = "arm64" if "Architecture-Override" in fields else "any"
        fields = fields.replace("\nArchitecture-Override: arm64", "")
        paragraphs.append(f"Package: {name}\nVersion: 1.0\nBinary: {name}\nArchitecture: {arch}\n{fields}\n")
    root.mkdir(parents=True, exist_ok=True)
    sources, packages = root / "Sources", root / "Packages"
    sources.write_text("\n".join(paragraphs))
    packages.write_text(
        "Package: libfoo-dev\nVersion: 1.0\nArchitecture: amd64\nSource: libfoo\nProvides: libfoo-api\n"
        "Filename: pool/main/libf/libfoo/libfoo-dev_1.0_amd64.deb\nSize: 1\nSHA256: 00\n"
    )
    return sources, packages


def test_what_counts_as_a_build_dependency(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    suite = f"rules-{uuid.uuid4().hex[:8]}"
    sources, packages = write_rules_suite(tmp_path)
    first = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], insecure_unsigned_release=True
    )
    again = import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], insecure_unsigned_release=True
    )
    assert first.inserted == len(RULES) + 2 and (again.inserted, again.removed) == (0, 0)  # idempotent

    def plan(architecture: str, **options: object) -> list[str]:
        with sessions() as session:
            found = rebuild_targets(
                session=session,
                suite=suite,
                binaries=["libfoo-dev"],
                architecture=architecture,
                exclude_source="libfoo",
                **options,  # type: ignore[arg-type]
            )
        return [t.source for t in found]

    assert plan("amd64") == ["alternative", "not-on-arm", "unless-nocheck", "virtual", "wildcard"]
    # libfoo-dev's Provides are known for amd64 only (the suite has no arm64 Packages).
    assert plan("arm64") == ["alternative", "arm-only", "arm-source", "unless-nocheck", "wildcard"]
    assert plan("amd64", all_sources=True) == sorted(set(RULES) - {"arm-source"})
    with sessions() as session, pytest.raises(LookupError, match="unknown suite"):
        rebuild_targets(session=session, suite="no-such-suite", binaries=["x"])


def test_architecture_restrictions() -> None:
    assert applies_on(None, "amd64")
    assert applies_on("amd64 i386", "amd64") and not applies_on("amd64 i386", "arm64")
    assert not applies_on("!amd64", "amd64") and applies_on("!amd64", "arm64")
    assert applies_on("any-amd64", "amd64") and not applies_on("any-arm64", "amd64")
    assert applies_on("arm64|!i386", "amd64")  # one of its relations applies


async def test_simulated_rebuild_runs_the_campaign_workflows(
    client: Client, settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    suite = f"rules-{uuid.uuid4().hex[:8]}"
    sources, packages = write_rules_suite(tmp_path)
    import_suite(
        sessions=sessions, name=suite, sources=sources, packages=[packages], insecure_unsigned_release=True
    )
    params = CampaignInput(
        trigger_source="libfoo",
        trigger_version="2.0",
        suite=suite,
        simulation=Simulation(seed=3),
        kind=CampaignKind.REBUILD,
        batch_size=2,
        batches_in_flight=2,
    )
    handle = await start_campaign(client, params, settings.task_queue)
    assert handle.id.startswith("simulated-rebuild-libfoo_2.0-")
    report = await asyncio.wait_for(handle.result(), timeout=120)
    assert report.kind is CampaignKind.REBUILD and report.simulated
    assert report.targets == 5 and sum(report.counts.values()) == 5 and report.batches == 3
    assert Verdict.NEUTRAL not in report.counts  # a build passes or fails
    # A second rebuild shares the references of the first (the keys are rebuild keys, not test keys).
    second = await start_campaign(client, params, settings.task_queue)
    assert (await asyncio.wait_for(second.result(), timeout=120)).references_reused == 5
    await replay(client, handle.id, "rebuild-root-simulated")
    await replay(client, f"{handle.id}-amd64-batch-0000", "rebuild-batch-simulated")


def debflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        env={**subprocess_env(settings), "COLUMNS": "300"},
        cwd=PROJECT_ROOT,
        timeout=120,
    )


async def test_rebuild_of_a_run_that_did_not_build_is_refused(
    client: Client, settings: Settings, worker: None, tmp_path: Path
) -> None:
    tree = variant(
        EXAMPLES / "hello-debflow",
        tmp_path / "hello-debflow",
        version="1.0.1",
        replacements={"hello.c": ("int main(", "int main(this does not compile")},
        changelog="Break the build.",
    )
    await asyncio.to_thread(run, ["dpkg-source", "-b", tree.name], tmp_path)
    upload = await submit_upload(
        client,
        settings,
        settings.database_url or "",
        tmp_path / "hello-debflow_1.0.1.dsc",
        checks=[Check.BUILD],
        again=True,
    )
    assert (await upload.result()).result != TaskResult.SUCCESS
    before = [w.id async for w in client.list_workflows("WorkflowType = 'Campaign'")]
    done = await asyncio.to_thread(debflow, settings, "rebuild", "--upload", upload.id)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "built nothing successfully" in done.stderr and "rebuild its build-dependents" in done.stderr
    assert [w.id async for w in client.list_workflows("WorkflowType = 'Campaign'")] == before
    for args in (["rebuild"], ["rebuild", "--all", "--suite", "bookworm"], ["rebuild", "x y", "--simulated"]):
        refused = await asyncio.to_thread(debflow, settings, *args)
        assert refused.returncode == 2 and refused.stderr.startswith("error: "), (args, refused.stderr)


USER = "greeting-user-debflow"


def greeting_user_tree(root: Path) -> Path:
    """A build-dependent of hello-debflow that uses its interface at build time: the build checks the greeting
    it embeds, so a changed greeting breaks the build (not only a test)."""
    tree = root / USER
    files = {
        "debian/control": f"Source: {USER}\nSection: misc\nPriority: optional\n"
        "Maintainer: debflow developers <debflow@example.org>\n"
        "Build-Depends: debhelper-compat (= 13), hello-debflow\n"
        f"Standards-Version: 4.6.2\nRules-Requires-Root: no\n\nPackage: {USER}\nArchitecture: all\n"
        "Depends: ${misc:Depends}\nDescription: embeds hello-debflow's greeting (debflow tests)\n"
        " Built with the greeting of hello-debflow, which it expects unchanged.\n",
        "debian/changelog": f"{USER} (1.0) unstable; urgency=medium\n\n  * Initial release.\n\n"
        " -- debflow developers <debflow@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
        "debian/rules": "#!/usr/bin/make -f\n%:\n\tdh $@\n\noverride_dh_auto_build:\n"
        "\thello-debflow > greeting.txt\n\tgrep -qx 'Hello from debflow' greeting.txt\n",
        "debian/install": "greeting.txt usr/share/greeting-user-debflow/\n",
        "debian/source/format": "3.0 (native)\n",
    }
    for name, content in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(content)
    (tree / "debian/rules").chmod(0o755)
    return tree


@pytest.mark.slow
async def test_real_rebuild_confirms_a_regression(
    client: Client,
    settings: Settings,
    worker: None,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    tmp_path: Path,
) -> None:
    suite = f"examples-{uuid.uuid4().hex[:8]}"

    def build_archive() -> LocalArchive:
        """The local archive is built on this host: greeting-user-debflow's build needs hello-debflow 1.0
        installed here, under the host's dpkg lock (other test processes install and remove it too)."""
        with host_dpkg_lock():
            hello = build_local_archive(tmp_path / "hello", [EXAMPLES / "hello-debflow"])
            debs = sorted(str(d) for d in hello.root.rglob("*.deb"))
            subprocess.run(["dpkg", "-i", *debs], check=True, capture_output=True)
            try:
                return build_local_archive(
                    tmp_path / "mirror",
                    [EXAMPLES / "hello-debflow", greeting_user_tree(tmp_path / "trees")],
                    suite=suite,
                )
            finally:
                subprocess.run(["dpkg", "--purge", "hello-debflow", "hello-debflow-doc"], capture_output=True)

    archive = await asyncio.to_thread(build_archive)
    import_suite(
        sessions=sessions,
        name=suite,
        sources=archive.sources,
        packages=archive.packages,
        release=archive.release,
        keyring=archive.keyring,
        mirror=archive.mirror,
    )
    (tmp_path / "upload").mkdir()
    dsc = await asyncio.to_thread(hello_with_a_new_greeting, tmp_path / "upload")
    upload = await submit_upload(
        client, settings, settings.database_url or "", dsc, checks=[Check.BUILD], again=True
    )
    assert (await upload.result()).result == TaskResult.SUCCESS

    params = await campaign_for_upload(client, upload.id, suite=suite, kind=CampaignKind.REBUILD)
    campaign = await start_campaign(client, params, settings.task_queue)
    report = await asyncio.wait_for(campaign.result(), timeout=600)

    assert report.kind is CampaignKind.REBUILD and not report.simulated
    assert report.counts == {Verdict.REGRESSION: 1}, report.notable
    (user,) = report.notable
    assert user.source == USER and user.attempts == 2  # confirmed by a re-build
    assert user.new is RunResult.FAIL and user.reference is RunResult.PASS
    assert user.new_log_artifact_id and user.reference_log_artifact_id
    logs = store.files_of([user.new_log_artifact_id, user.reference_log_artifact_id])
    new_log = "".join(p.read_text() for p in logs[user.new_log_artifact_id].values())
    reference_log = "".join(p.read_text() for p in logs[user.reference_log_artifact_id].values())
    assert "hello-debflow (1.1)" in new_log or "hello-debflow_1.1" in new_log
    assert "hello-debflow_1.0" in reference_log and "Howdy" not in reference_log
    assert left_on_the_host(["hello-debflow", "hello-debflow-doc"]) == []
    await replay(client, campaign.id, "rebuild-root-real")
    await replay(client, f"{campaign.id}-amd64-batch-0000", "rebuild-batch-real")
