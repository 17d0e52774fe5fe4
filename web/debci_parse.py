"""The `tests` of a debci API call, checked strictly before anything is stored: a JSON array of request
objects (`/test/SUITE/ARCH`) or of {suite, arch, tests} groups (`/test/batch`), each problem one line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from models.debci import (
    SUITE_NAME,
    BadRequest,
    TestRequest,
    check_package,
    check_priority,
    parse_pins,
    parse_trigger,
)

ITEM_KEYS = ("package", "trigger", "pin-packages", "priority", "is_private", "extra-apt-sources")
GROUP_KEYS = ("suite", "arch", "tests")
Item = tuple[str, str, TestRequest]  # suite, architecture, request: what submit_tests takes


def load_tests(text: str | None) -> Any:
    if text is None:
        raise BadRequest("the form field 'tests' is missing: a JSON array (a field or an uploaded file)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"tests is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise BadRequest("tests is nested too deeply to be a list of test requests") from None


def _array(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{what} must be a JSON array, not {type(value).__name__.replace('dict', 'object')}")
    if not value:
        raise BadRequest(f"{what} is an empty array: nothing to test")
    return value


def _unknown_keys(item: dict[str, Any], known: Iterable[str], where: str) -> None:
    unknown = sorted(set(item) - set(known))
    if unknown:
        raise BadRequest(f"{where}: unknown key {unknown[0][:40]!r} (known: {', '.join(known)})")


def parse_request(item: Any, where: str, default_priority: int) -> TestRequest:
    """One request object; `where` (e.g. `tests[3]`) starts its error line."""
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object with package and trigger")
    _unknown_keys(item, ITEM_KEYS, where)
    try:
        if "package" not in item:
            raise BadRequest("package is missing")
        package = check_package(item["package"])
        trigger = parse_trigger(item.get("trigger"))
        pins = parse_pins(item.get("pin-packages"))
        priority = check_priority(item["priority"]) if "priority" in item else default_priority
        private = item.get("is_private", False)
        if not isinstance(private, bool):
            raise BadRequest(f"is_private must be true or false, not {json.dumps(private)[:20]}")
        sources = item.get("extra-apt-sources", [])
        if sources != []:
            raise BadRequest(
                "extra-apt-sources is not supported: debflow tests imported suites only (use pin-packages)"
            )
    except BadRequest as e:
        raise BadRequest(f"{where}: {e}") from None
    return TestRequest(package=package, trigger=trigger, pins=pins, priority=priority, is_private=private)


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise BadRequest(f"{count} test requests in one call; at most {limit} are accepted (split the call)")


def parse_suite_tests(
    text: str | None, suite: str, architecture: str, *, default_priority: int, limit: int
) -> list[Item]:
    """`tests` of POST /test/SUITE/ARCH."""
    tests = _array(load_tests(text), "tests")
    _check_count(len(tests), limit)
    return [
        (suite, architecture, parse_request(t, f"tests[{i}]", default_priority)) for i, t in enumerate(tests)
    ]


def check_target(suite: Any, architecture: Any, architectures: Iterable[str], where: str = "") -> None:
    """The suite's name (whether it is imported, the service checks) and a configured architecture."""
    prefix = f"{where}: " if where else ""
    if not (isinstance(suite, str) and SUITE_NAME.fullmatch(suite)):
        raise BadRequest(f"{prefix}invalid suite {json.dumps(suite)[:40]}")
    if not (isinstance(architecture, str) and architecture in architectures):
        raise BadRequest(f"{prefix}unknown architecture {json.dumps(architecture)[:40]}")


def parse_batch(
    text: str | None, *, architectures: Iterable[str], default_priority: int, limit: int
) -> list[Item]:
    """`tests` of POST /test/batch: groups of {"suite", "arch": [ARCH, ...], "tests": [request, ...]}
    (debci's batch form); every request runs on each of its group's architectures."""
    known = tuple(architectures)
    groups = _array(load_tests(text), "tests")
    count = 0
    for g, group in enumerate(groups):
        where = f"tests[{g}]"
        if not isinstance(group, dict):
            raise BadRequest(f"{where} must be an object with suite, arch and tests")
        _unknown_keys(group, GROUP_KEYS, where)
        arches = group.get("arch")
        arches = [arches] if isinstance(arches, str) else arches
        if not (isinstance(arches, list) and arches):
            raise BadRequest(f"{where}: arch must be a non-empty array of architectures")
        if len(set(map(json.dumps, arches))) != len(arches):
            raise BadRequest(f"{where}: arch names an architecture twice")
        for arch in arches:
            check_target(group.get("suite"), arch, known, where)
        count += len(arches) * len(_array(group.get("tests"), f"{where}.tests"))
        _check_count(count, limit)
    items: list[Item] = []
    for g, group in enumerate(groups):
        arches = [group["arch"]] if isinstance(group["arch"], str) else group["arch"]
        requests = [
            parse_request(t, f"tests[{g}].tests[{i}]", default_priority) for i, t in enumerate(group["tests"])
        ]
        items.extend((group["suite"], arch, r) for arch in arches for r in requests)
    return items
