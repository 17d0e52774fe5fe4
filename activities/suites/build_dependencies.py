"""Build-dependencies of suite sources: which relations count, and the targets of a rebuild campaign.

What counts (docs/rebuilds.md): a source is a rebuild target of an upload when its Build-Depends,
Build-Depends-Arch or Build-Depends-Indep names one of the upload's binaries, or a name one of them
Provides in the suite —

- in any alternative (`a | b`: naming `b` counts, since sbuild may pick it);
- with an architecture restriction (`foo [amd64 arm64]`, `foo [!hurd-any]`) only on the architectures it
  applies to (dpkg's wildcards, `any-amd64`, `linux-any`, are judged with dpkg's tables);
- with build profiles (`<!nocheck>`, `<stage1>`) only if the relation is active in the default build, the one
  with no profile set: `<!nocheck>` counts, `<stage1>` and `<stage1 !cross>` do not. Profiles are decided at
  import (they do not vary by architecture); architecture restrictions are kept and decided when planning.

Version constraints and `:any`/`:native` qualifiers are ignored: the rebuild is what tells whether the new
version still satisfies them. Only direct relations count (as for test campaigns); the implicit
build-essential set does not (rebuilding everything is `--all`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from debian.debian_support import Version
from sqlalchemy import text
from sqlalchemy.orm import Session

from models.architectures import builds_on, dpkg_wildcard_matches
from models.suite import SOURCE_ITEM, SUITE_CATEGORY, RelationKind

BUILD_DEPENDS_FIELDS = ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")
# Several restrictions of one name (it appears in more than one relation) are joined by this.
RESTRICTIONS_SEPARATOR = "|"


@dataclass(frozen=True)
class RebuildTarget:
    source: str
    version: str


def active_by_default(restrictions: list[list[Any]] | None) -> bool:
    """Whether a relation's build-profile formula holds with no profile set: some `<…>` list whose terms
    are all negated (`<!nocheck>`); no formula at all holds too."""
    if not restrictions:
        return True
    return any(all(not term.enabled for term in group) for group in restrictions)


def build_dependency_names(alternatives: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, str | None]:
    """Name → architecture restriction (None: everywhere) of the relations active in the default profile."""
    found: dict[str, str | None] = {}
    for group in alternatives:
        for alternative in group:
            if not active_by_default(alternative.get("restrictions")):
                continue
            arches = alternative.get("arch")
            restriction = " ".join(("" if a.enabled else "!") + a.arch for a in arches) if arches else None
            name = alternative["name"]
            if name in found and (found[name] is None or restriction is None):
                found[name] = None  # unrestricted somewhere: it applies everywhere
            elif name in found:
                found[name] = f"{found[name]}{RESTRICTIONS_SEPARATOR}{restriction}"
            else:
                found[name] = restriction
    return found


def applies_on(restriction: str | None, architecture: str) -> bool:
    """Whether a stored restriction (`build_dependency_names`) lets the relation apply on `architecture`."""
    if restriction is None:
        return True
    for part in restriction.split(RESTRICTIONS_SEPARATOR):
        words = part.split()
        wanted = [w for w in words if not w.startswith("!")]
        unwanted = [w[1:] for w in words if w.startswith("!")]
        if wanted and any(_matches(architecture, w) for w in wanted):
            return True
        if not wanted and not any(_matches(architecture, w) for w in unwanted):
            return True
    return False


def _matches(architecture: str, word: str) -> bool:
    # Plain names compare as they are; dpkg's tables judge the wildcards (any, linux-any, any-amd64).
    return word == architecture or (
        ("-" in word or word == "any") and dpkg_wildcard_matches(architecture, word)
    )


# One statement: the source items that build-depend on the uploaded names or on what those binaries
# provide in the suite (or every source, for an archive rebuild), with the restrictions of those relations.
_TARGETS = text(
    f"""
    WITH suite AS (SELECT id FROM collection WHERE category = '{SUITE_CATEGORY}' AND name = :suite),
    named AS (
        SELECT unnest(CAST(:binaries AS text[])) AS name
        UNION
        SELECT r.target FROM suite_relation r, suite
        WHERE r.collection_id = suite.id AND r.kind = '{RelationKind.PROVIDES}'
          AND r.package = ANY(CAST(:binaries AS text[])) AND r.architecture IN (:architecture, 'all')),
    hits AS (
        SELECT r.item_id, array_agg(r.restriction) AS restrictions
        FROM suite_relation r, suite
        WHERE NOT :all_sources AND r.collection_id = suite.id AND r.kind = '{RelationKind.BUILD_DEPENDS}'
          AND r.target IN (SELECT name FROM named)
        GROUP BY r.item_id)
    SELECT i.data ->> 'name', i.data ->> 'version', i.data ->> 'architecture', h.restrictions
    FROM collection_item i JOIN suite ON i.collection_id = suite.id
    LEFT JOIN hits h ON h.item_id = i.id
    WHERE i.removed_at IS NULL AND i.category = '{SOURCE_ITEM}'
      AND NOT (i.data ? 'extra_source_only')
      AND (:all_sources OR h.item_id IS NOT NULL)
    """
)
_SUITE_EXISTS = text(f"SELECT 1 FROM collection WHERE category = '{SUITE_CATEGORY}' AND name = :suite")


def rebuild_targets(
    *,
    session: Session,
    suite: str,
    binaries: Sequence[str],
    architecture: str = "amd64",
    all_sources: bool = False,
    exclude_source: str | None = None,
) -> list[RebuildTarget]:
    """The sources of `suite` to rebuild on `architecture` for an upload building `binaries` (every source
    with `all_sources`), newest version of each, sorted by name; `exclude_source` (the upload's own) is
    left out: its pipeline builds it."""
    rows = session.execute(
        _TARGETS,
        {
            "suite": suite,
            "binaries": list(binaries),
            "architecture": architecture,
            "all_sources": all_sources,
        },
    ).all()
    if not rows and session.execute(_SUITE_EXISTS, {"suite": suite}).first() is None:
        raise LookupError(f"unknown suite {suite!r}: import it first with `debflow import-suite {suite} …`")
    newest: dict[str, tuple[str, str]] = {}
    for name, version, arch_field, restrictions in rows:
        if name == exclude_source or not builds_on(arch_field or "", architecture):
            continue
        if restrictions is not None and not any(applies_on(r, architecture) for r in restrictions):
            continue
        # A suite may carry two versions of a source; the archive builds the newest.
        if name not in newest or Version(version) > Version(newest[name][0]):
            newest[name] = (version, arch_field)
    return [RebuildTarget(name, version) for name, (version, _) in sorted(newest.items())]
