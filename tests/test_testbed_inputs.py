"""What a run asks of its testbed, read from the source package: test dependencies beyond the binaries under
test, and whether any test needs the network."""

from __future__ import annotations

from pathlib import Path

from activities.tools.testbed_inputs import what_tests_need
from client.local_archive import run


def source_package(root: Path, tests_control: str | None) -> Path:
    tree = root / "needs-debflow"
    files = {
        "debian/control": "Source: needs-debflow\nMaintainer: debflow <debflow@example.org>\n"
        "Build-Depends: debhelper-compat (= 13), libfoo-dev\n\nPackage: needs-debflow\nArchitecture: all\n"
        "Description: x\n x\n",
        "debian/changelog": "needs-debflow (1.0) unstable; urgency=medium\n\n  * x\n\n"
        " -- debflow <debflow@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
        "debian/source/format": "3.0 (native)\n",
    }
    if tests_control is not None:
        files["debian/tests/control"] = tests_control
    for name, content in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(content)
    run(["dpkg-source", "-b", tree.name], root)
    return root / "needs-debflow_1.0.dsc"


def test_test_dependencies_and_network_come_from_the_tests_control(tmp_path: Path) -> None:
    dsc = source_package(
        tmp_path,
        "Tests: a\nDepends: @, python3 (>= 3.11),\n  curl | wget\n\n"
        "Tests: b\nDepends: @builddeps@\nRestrictions: allow-stderr, needs-internet\n\n"
        "Test-Command: true\n",  # no Depends: the binaries under test only
    )
    relations, internet = what_tests_need(dsc)
    assert relations == "python3 (>= 3.11), curl | wget, debhelper-compat (= 13), libfoo-dev, build-essential"
    assert internet


def test_tests_without_needs_internet_or_control_get_no_network(tmp_path: Path) -> None:
    (tmp_path / "offline").mkdir()
    offline = source_package(tmp_path / "offline", "Tests: a\nDepends: @\nRestrictions: needs-root\n")
    assert what_tests_need(offline) == ("", False)
    (tmp_path / "none").mkdir()
    assert what_tests_need(source_package(tmp_path / "none", None)) == ("", False)
