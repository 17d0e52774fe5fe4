"""The `unshare` executor: sbuild and autopkgtest in throw-away user namespaces from an mmdebstrap tarball."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from debian.deb822 import Changes

from activities.tools.environments import EnvironmentStore
from activities.tools.executors import (
    BuildOutput,
    Hooks,
    InfrastructureError,
    TestOutput,
    UnsupportedArchitecture,
    host_architecture,
    run_hooked,
)
from activities.tools.process import require_tool

# sbuild's summary names the stage a build stopped at. Only the build itself and an unsatisfiable
# build-dependency are verdicts on the package; any other stage failing is the machine's or the mirror's.
PACKAGE_STAGES = {"build", "install-deps", "check-space", "arch-check", "check-unpacked-version"}
# A dependency that could not be *downloaded* is the mirror's fault even in install-deps.
NETWORK_ERRORS = re.compile(
    r"Failed to fetch|Temporary failure resolving|Could not resolve|Connection failed|"
    r"Unable to connect|Hash Sum mismatch|Some index files failed to download"
)


class UnshareExecutor:
    """Builds with `sbuild --chroot-mode=unshare` and tests with `autopkgtest -- unshare`, both from the
    suite's environment tarball; build and test dependencies come from the mirror inside.

    The package's code runs as an unprivileged user in new user, mount, PID and network namespaces of a
    fresh copy of the tarball: nothing of it is left on the worker afterwards.
    """

    name = "unshare"
    virt_server = "unshare"

    def __init__(self, environments: EnvironmentStore) -> None:
        self.environments = environments
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
        environment = self.environments.get(suite, architecture, workdir, hooks)
        outcome = run_hooked(
            [
                "autopkgtest",
                # mmdebstrap leaves no apt lists in the tarball: -U updates them (and upgrades) first.
                "--apt-upgrade",
                "--summary-file",
                str(summary),
                "--output-dir",
                str(output_dir),
                *map(str, debs),
                str(dsc),
                "--",
                "unshare",
                "--tarball",
                str(environment.path),
                "--arch",
                architecture,
                "--release",
                suite,
            ],
            cwd=workdir,
            log=log,
            env={"LC_ALL": "C.UTF-8"},
            hooks=hooks,
        )
        return TestOutput(outcome, environment.use)


def _summary_field(log: str, field: str) -> str | None:
    """A field of the summary sbuild prints last (`Status: successful`, `Fail-Stage: build`)."""
    found = re.findall(rf"^{re.escape(field)}: (\S+)\s*$", log, re.MULTILINE)
    return found[-1] if found else None
