"""Task queues per capability, all named from the control queue: the one place workflows and workers agree on.

The control queue (`DEBFLOW_TASK_QUEUE`, default `debflow`) carries every workflow task and the short
database activities. Builds and tests go to one queue per architecture, lintian to its own queue, so a
worker process polls only what its host can run, with slot counts per kind of work
(docs/operations.md "Worker pools").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    CONTROL = "control"
    BUILD = "build"
    TEST = "test"
    LINTIAN = "lintian"


PER_ARCHITECTURE = (Kind.BUILD, Kind.TEST)


def build_queue(control: str, architecture: str) -> str:
    return f"{control}-build-{architecture}"


def test_queue(control: str, architecture: str) -> str:
    return f"{control}-test-{architecture}"


def lintian_queue(control: str) -> str:
    return f"{control}-lintian"


@dataclass(frozen=True)
class Capability:
    """One kind of work a worker process takes: `control`, `lintian`, `build:<arch>` or `test:<arch>`."""

    kind: Kind
    architecture: str = ""

    def queue(self, control: str) -> str:
        if self.kind is Kind.BUILD:
            return build_queue(control, self.architecture)
        if self.kind is Kind.TEST:
            return test_queue(control, self.architecture)
        if self.kind is Kind.LINTIAN:
            return lintian_queue(control)
        return control

    def __str__(self) -> str:
        return f"{self.kind}:{self.architecture}" if self.architecture else str(self.kind)


def parse_capabilities(
    text: str, *, host_architecture: str, known_architectures: list[str]
) -> list[Capability]:
    """`control,build:amd64,test:amd64,lintian`; `build`/`test` alone mean the host's architecture, `all`
    means every capability this host has. Unknown words are one clear error."""
    found: set[Capability] = set()
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        name, _, arch = word.partition(":")
        if name == "all" and not arch:
            found |= {
                Capability(Kind.CONTROL),
                Capability(Kind.LINTIAN),
                Capability(Kind.BUILD, host_architecture),
                Capability(Kind.TEST, host_architecture),
            }
            continue
        try:
            kind = Kind(name)
        except ValueError:
            raise ValueError(
                f"unknown capability {word!r}: use control, lintian, build[:ARCH], test[:ARCH] or all"
            ) from None
        if kind in PER_ARCHITECTURE:
            arch = arch or host_architecture
            if arch not in known_architectures:
                raise ValueError(f"unknown architecture {arch!r} in capability {word!r}")
        elif arch:
            raise ValueError(f"capability {name!r} takes no architecture (got {word!r})")
        found.add(Capability(kind, arch))
    if not found:
        raise ValueError("no capability given: use control, lintian, build[:ARCH], test[:ARCH] or all")
    order = list(Kind)
    return sorted(found, key=lambda c: (order.index(c.kind), c.architecture))
