"""Which architectures a source builds on: the one rule for submissions, upload runs and campaigns.

A source's Architecture field holds names (`amd64`), `all`, `any` and dpkg wildcards (`linux-any`,
`any-amd64`, `gnu-linux-any`). Wildcards are judged with dpkg's own tables (python-debian reads them),
so debflow builds what dpkg-buildpackage would build. Workflows never read those tables (a workflow does
no I/O): the `describe_upload` activity answers for them (`UploadDescription.builds_for`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from debian._arch_table import DpkgArchTable

# (architecture, wildcard) → whether the wildcard covers the architecture.
WildcardMatcher = Callable[[str, str], bool]


@functools.cache
def _arch_table() -> DpkgArchTable | None:
    from debian._arch_table import DpkgArchTable

    try:
        return DpkgArchTable.load_arch_table()
    except OSError:  # no dpkg tables on this host: wildcards are then taken to match
        return None


def dpkg_wildcard_matches(architecture: str, wildcard: str) -> bool:
    table = _arch_table()
    return table is None or bool(table.matches_architecture(architecture, wildcard))


def recorded_wildcard_matches(architecture: str, wildcard: str) -> bool:
    """The fixed rule upload runs used before `describe_upload` answered with dpkg's tables; kept so
    that their recorded histories replay with the same decisions."""
    return wildcard in ("linux-any", f"any-{architecture}")


def builds_on(
    field: str | Sequence[str],
    architecture: str,
    *,
    arch_all: bool = True,
    matches: WildcardMatcher = dpkg_wildcard_matches,
    empty_means_any: bool = True,
) -> bool:
    """Whether a source with this Architecture field builds packages for `architecture`.

    `arch_all`: whether `all` counts. A campaign tests an arch:all source on every architecture; an
    upload run asks which architectures have arch-specific packages (it builds arch:all ones once, with
    its first architecture). `empty_means_any`: an index entry without the field is taken to build
    anywhere (suites); the recorded upload runs took an empty field to build nothing.
    """
    words = field.split() if isinstance(field, str) else list(field)
    for word in words or (["any"] if empty_means_any else []):
        if word in ("any", architecture) or (arch_all and word == "all"):
            return True
        if word != "all" and "any" in word and matches(architecture, word):
            return True
    return False
