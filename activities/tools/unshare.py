"""The `unshare` executor: sbuild and autopkgtest in throw-away user namespaces from an mmdebstrap tarball."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Changes

from activities.tools.environments import EnvironmentStore
from activities.tools.executors import (
    BuildOutput,
    EnvironmentUse,
    Hooks,
    InfrastructureError,
    TestOutput,
    UnsupportedArchitecture,
    host_architecture,
    run_hooked,
)
from activities.tools.process import require_tool
from activities.tools.testbed_inputs import SuiteIndex, suite_index, what_tests_need
from activities.tools.testbeds import Testbeds, link, virt_server_argv

# sbuild's summary names the stage a build stopped at. Only the build itself and an unsatisfiable
# build-dependency are verdicts on the package; any other stage failing is the machine's or the mirror's.
PACKAGE_STAGES = {"build", "install-deps", "check-space", "arch-check", "check-unpacked-version"}
# A dependency that could not be *downloaded* is the mirror's fault even in install-deps.
NETWORK_ERRORS = re.compile(
    r"Failed to fetch|Temporary failure resolving|Could not resolve|Connection failed|"
    r"Unable to connect|Hash Sum mismatch|Some index files failed to download"
)


class UnshareExecutor:
    """Builds with `sbuild --chroot-mode=unshare` from the suite's environment tarball; tests with
    autopkgtest on an overlay clone of the suite state's prepared environment (activities/tools/testbeds.py)
    when the suite is imported, else with `autopkgtest -- unshare` on a fresh unpacking of the tarball.

    The package's code runs in new user, mount, PID, IPC and UTS namespaces on a throw-away tree: nothing of
    it is left on the worker afterwards. Network: sbuild runs the build itself in a new network namespace
    (dependencies are installed with network); tests on a prepared testbed get a new network namespace with
    only loopback unless a test declares needs-internet; `autopkgtest -- unshare` (the tarball path) makes
    no network namespace at all, its tests share the worker's network.
    """

    name = "unshare"
    virt_server = "unshare"

    def __init__(self, environments: EnvironmentStore, testbeds: Testbeds | None = None) -> None:
        self.environments = environments
        self.testbeds = testbeds
        self.architecture = host_architecture()

    def _check_architecture(self, architecture: str) -> None:
        if architecture != self.architecture:
            raise UnsupportedArchitecture(
                f"the unshare executor builds and tests for {self.architecture} only, not {architecture}"
            )

    def build(
        self,
        dsc: Path,
        workdir: Path,
        *,
        suite: str,
        architecture: str,
        build_arch_all: bool,
        log: Path,
        hooks: Hooks,
        extra_debs: Sequence[Path] = (),
    ) -> BuildOutput:
        require_tool("sbuild", "sbuild")
        require_tool("newuidmap", "uidmap")
        self._check_architecture(architecture)
        environment = self.environments.get(suite, architecture, workdir, hooks)
        out = workdir / "out"
        out.mkdir()
        outcome = run_hooked(
            [
                "sbuild",
                "--chroot-mode=unshare",
                f"--chroot={environment.path}",
                f"--dist={suite}",
                f"--arch={architecture}",
                "--arch-any",
                "--arch-all" if build_arch_all else "--no-arch-all",
                "--nolog",  # the log goes to stdout, which run_tool writes to `log`
                "--no-run-lintian",
                "--no-run-autopkgtest",
                "--no-run-piuparts",
                "--no-apt-upgrade",
                "--no-apt-distupgrade",
                # A rebuild campaign's packages under test: sbuild makes a local repository of them.
                *(f"--extra-package={deb}" for deb in extra_debs),
                str(dsc),
            ],
            cwd=out,
            log=log,
            env={"LC_ALL": "C.UTF-8", "DEB_BUILD_OPTIONS": "parallel=2"},
            hooks=hooks,
        )
        changes = sorted(out.glob("*.changes"))
        if outcome.returncode == 0 and changes:
            with open(changes[0]) as f:
                listed = [entry["name"] for entry in Changes(f).get("Files", [])]
            debs = [out / name for name in listed if name.endswith(".deb")]
            return BuildOutput(outcome, changes[0], debs, environment.use)
        text = log.read_text(errors="replace")
        stage = _summary_field(text, "Fail-Stage")
        status = _summary_field(text, "Status")
        infrastructure = (
            status == "given-back"
            or (stage is not None and stage not in PACKAGE_STAGES)
            or (stage == "install-deps" and NETWORK_ERRORS.search(text) is not None)
            or (stage is None and status is None)  # sbuild stopped before it could summarise
        )
        if infrastructure:
            raise InfrastructureError(
                f"sbuild failed at stage {stage or 'unknown'} (exit {outcome.returncode}, status "
                f"{status or 'unknown'}), not because of the package: {text[-600:]}"
            )
        return BuildOutput(outcome, None, [], environment.use)

    def autopkgtest(
        self,
        dsc: Path,
        debs: list[Path],
        *,
        suite: str,
        architecture: str,
        workdir: Path,
        output_dir: Path,
        summary: Path,
        log: Path,
        hooks: Hooks,
    ) -> TestOutput:
        require_tool("autopkgtest", "autopkgtest")
        require_tool("newuidmap", "uidmap")
        self._check_architecture(architecture)
        testbed = self.testbed(dsc, debs, suite=suite, workdir=workdir, hooks=hooks)
        outcome = run_hooked(
            [
                "autopkgtest",
                *testbed.options,
                "--summary-file",
                str(summary),
                "--output-dir",
                str(output_dir),
                *map(str, debs),
                str(dsc),
                "--",
                *testbed.virt_server,
            ],
            cwd=workdir,
            log=log,
            env={"LC_ALL": "C.UTF-8"},
            hooks=hooks,
        )
        return TestOutput(outcome, testbed.use)

    def testbed(self, dsc: Path, debs: list[Path], *, suite: str, workdir: Path, hooks: Hooks) -> Testbed:
        """The testbed of one autopkgtest run: an overlay clone of the suite state's prepared environment
        when the suite is imported, else a fresh unpacking of its tarball."""
        index = (
            suite_index(self.environments.store.sessions, suite, self.architecture) if self.testbeds else None
        )
        if self.testbeds is not None and index is not None:
            return self._prepared(self.testbeds, index, dsc, debs, workdir=workdir, hooks=hooks)
        environment = self.environments.get(suite, self.architecture, workdir, hooks)
        virt = [
            "unshare",
            "--tarball",
            str(environment.path),
            "--arch",
            self.architecture,
            "--release",
            suite,
        ]
        # mmdebstrap leaves no apt lists in the tarball: --apt-upgrade updates them (and upgrades) first.
        return Testbed(["--apt-upgrade"], virt, environment.use)

    def _prepared(
        self,
        testbeds: Testbeds,
        index: SuiteIndex,
        dsc: Path,
        debs: list[Path],
        *,
        workdir: Path,
        hooks: Hooks,
    ) -> Testbed:
        """Packages from the run's repository; no network unless a test declares needs-internet."""
        clock = time.monotonic()
        environment = self.environments.get(testbeds.tarball_suite(index), self.architecture, workdir, hooks)
        prepared, made = testbeds.prepare(
            environment.path, environment.artifact_id, index, self.architecture, hooks
        )
        environment.path.unlink(missing_ok=True)
        use = EnvironmentUse(
            environment.artifact_id,
            time.monotonic() - clock,
            ready=environment.use.ready and not made,
            made=environment.use.made or made,
        )
        repo, binaries = workdir / "repo", workdir / "testbed-debs"
        repo.mkdir()
        binaries.mkdir()
        for deb in debs:
            link(deb, binaries / deb.name)
        satisfy, internet = what_tests_need(dsc)
        testbeds.provide(
            prepared,
            repo,
            install=[f"/srv/debflow-debs/{deb.name}" for deb in debs],
            satisfy=satisfy,
            debs=binaries,
            clone=workdir / "resolve",
            hooks=hooks,
            log=workdir / "resolve.log",
        )
        return Testbed([], virt_server_argv(prepared.tree, workdir / "testbed", repo, network=internet), use)


@dataclass(frozen=True)
class Testbed:
    """What autopkgtest is given for one run: its own options, the virt server with its arguments, and
    the environment it came from."""

    options: list[str]
    virt_server: list[str]
    use: EnvironmentUse


def _summary_field(log: str, field: str) -> str | None:
    """A field of the summary sbuild prints last (`Status: successful`, `Fail-Stage: build`)."""
    found = re.findall(rf"^{re.escape(field)}: (\S+)\s*$", log, re.MULTILINE)
    return found[-1] if found else None
