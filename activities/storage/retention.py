"""The retention rules as SQL, shared by the expiry activities and the dry-run plan.

An artifact is *expired* when `expires_at <= now`. It is *retained directly* when it was made by a
workflow that is still running (`running_workflow`), or an item of a collection that retains its
artifacts points at it and is active or was removed less than the collection's full-history period ago.
It is *kept* when it is not expired, retained directly, or reachable through `artifact_relation`
(source → target) from a kept artifact.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from models.expiry_payloads import RetentionPolicy
from models.tables import QA_RESULT_ITEM, QA_RESULTS_COLLECTION

IDS = ARRAY(BigInteger)


def retained_directly(alias: str) -> str:
    """SQL that is true for an artifact row `alias` kept by a running workflow or a collection."""
    return f"""(
        EXISTS (SELECT 1 FROM running_workflow w WHERE w.workflow_id = {alias}.workflow_id)
        OR EXISTS (
            SELECT 1 FROM collection_item ci JOIN collection c ON c.id = ci.collection_id
            WHERE ci.artifact_id = {alias}.id AND c.retains_artifacts
              AND (ci.removed_at IS NULL OR ci.removed_at > CAST(:now AS timestamptz)
                   - make_interval(days => coalesce(c.full_history_retention_days, :full_days)))
        )
    )"""


def id_arrays(statement: TextClause, *names: str) -> TextClause:
    return statement.bindparams(*(bindparam(n, type_=IDS) for n in names))


# The next expired artifacts after the cursor, in (expires_at, id) order along ix_artifact_expires_at.
CANDIDATES = text(
    """
    SELECT id, expires_at FROM artifact
    WHERE expires_at <= :now AND expires_at >= :after_at AND (expires_at, id) > (:after_at, :after_id)
    ORDER BY expires_at, id LIMIT :limit
    """
)

# Each candidate with its ancestors (artifacts with a relation to it), climbing only through expired
# ones, and whether each of them is kept by itself. A candidate with any such node is kept.
CLOSURE = id_arrays(
    text(
        f"""
        WITH RECURSIVE up(origin, id) AS (
            SELECT c, c FROM unnest(:ids) AS c
            UNION
            SELECT up.origin, r.artifact_id
            FROM up
            JOIN artifact cur ON cur.id = up.id AND cur.expires_at <= :now
            JOIN artifact_relation r ON r.target_id = up.id
        )
        SELECT up.origin, up.id,
               (a.expires_at IS NULL OR a.expires_at > :now OR {retained_directly("a")}) AS kept
        FROM up JOIN artifact a ON a.id = up.id
        """
    ),
    "ids",
)

LOCK_ARTIFACTS = id_arrays(
    text("SELECT id FROM artifact WHERE id = ANY(:ids) ORDER BY id FOR UPDATE SKIP LOCKED"), "ids"
)

# Run after the locks, so it sees every reference committed before them, and no new one can appear:
# a new reference takes FOR KEY SHARE on the row, which waits for our FOR UPDATE. Of the locked rows,
# those that are not expired, retained directly, pinned, or have a relation from a row we do not hold
# are kept, and so is everything reachable from a kept one; the rest is returned, to be deleted.
DELETABLE = id_arrays(
    text(
        f"""
        WITH RECURSIVE scope AS (
            SELECT a.id, a.expires_at, a.workflow_id FROM artifact a WHERE a.id = ANY(:locked)
        ), kept(id) AS (
            SELECT s.id FROM scope s
            WHERE s.expires_at IS NULL OR s.expires_at > :now OR s.id = ANY(:pinned)
               OR {retained_directly("s")}
               OR EXISTS (
                   SELECT 1 FROM artifact_relation r
                   WHERE r.target_id = s.id AND NOT r.artifact_id = ANY(:locked)
               )
            UNION
            SELECT r.target_id FROM kept k JOIN artifact_relation r ON r.artifact_id = k.id
            WHERE r.target_id = ANY(:locked)
        )
        SELECT id FROM scope WHERE id NOT IN (SELECT id FROM kept) ORDER BY id
        """
    ),
    "locked",
    "pinned",
)

# Deleting an artifact sets collection_item.artifact_id to NULL: those item rows are locked first,
# without waiting, so the delete itself never waits; an artifact whose item is busy stays for now.
ITEMS_OF = id_arrays(text("SELECT id, artifact_id FROM collection_item WHERE artifact_id = ANY(:ids)"), "ids")
LOCK_ITEMS = id_arrays(
    text("SELECT id FROM collection_item WHERE id = ANY(:ids) ORDER BY id FOR UPDATE SKIP LOCKED"), "ids"
)
FILES_OF = id_arrays(
    text("SELECT DISTINCT file_id FROM file_in_artifact WHERE artifact_id = ANY(:ids)"), "ids"
)
DELETE_ARTIFACTS = id_arrays(text("DELETE FROM artifact WHERE id = ANY(:ids)"), "ids")
LOCK_FILES = id_arrays(
    text("SELECT id FROM file WHERE id = ANY(:ids) ORDER BY id FOR UPDATE SKIP LOCKED"), "ids"
)
DELETE_FILES = id_arrays(
    text(
        "DELETE FROM file f WHERE f.id = ANY(:ids) "
        "AND NOT EXISTS (SELECT 1 FROM file_in_artifact x WHERE x.file_id = f.id) RETURNING f.sha256"
    ),
    "ids",
)
FILES_BY_SHA = text(
    "SELECT f.sha256, f.id, EXISTS (SELECT 1 FROM file_in_artifact x WHERE x.file_id = f.id) "
    "FROM file f WHERE f.sha256 = ANY(:shas)"
).bindparams(bindparam("shas", type_=ARRAY(Text)))

# --- collection items ---------------------------------------------------------------------------------

ITEM_PERIOD = (
    "make_interval(days => coalesce(c.full_history_retention_days, :full_days)"
    " + coalesce(c.metadata_only_retention_days, :metadata_days))"
)
SHORTEST_ITEM_PERIOD = text(
    "SELECT coalesce(min(coalesce(full_history_retention_days, :full_days)"
    " + coalesce(metadata_only_retention_days, :metadata_days)), :full_days + :metadata_days) "
    "FROM collection"
)
# Removed items in (removed_at, id) order along ix_collection_item_removed_at, up to the shortest period.
ITEM_CANDIDATES = text(
    f"""
    SELECT ci.id, ci.removed_at, ci.removed_at <= CAST(:now AS timestamptz) - {ITEM_PERIOD} AS due
    FROM collection_item ci JOIN collection c ON c.id = ci.collection_id
    WHERE ci.removed_at IS NOT NULL AND ci.removed_at <= :upper AND ci.removed_at >= :after_at
      AND (ci.removed_at, ci.id) > (:after_at, :after_id)
    ORDER BY ci.removed_at, ci.id LIMIT :limit
    """
)
DELETE_ITEMS = id_arrays(
    text(
        f"""
        DELETE FROM collection_item ci USING collection c
        WHERE ci.id = ANY(:ids) AND c.id = ci.collection_id AND ci.removed_at IS NOT NULL
          AND ci.removed_at <= CAST(:now AS timestamptz) - {ITEM_PERIOD}
        """
    ),
    "ids",
)

# --- QA results ---------------------------------------------------------------------------------------

QA_KEY = "(ci.data ->> 'task'), (ci.data ->> 'package'), (ci.data ->> 'architecture')"
QA_COLLECTIONS = text(
    f"SELECT id FROM collection WHERE category = '{QA_RESULTS_COLLECTION}' AND id >= :from_id ORDER BY id"
)
LIVE_OWNER = "EXISTS (SELECT 1 FROM running_workflow w WHERE w.workflow_id = ci.data ->> 'owner')"


def qa_page(*, after_key: bool) -> TextClause:
    """Active QA results of one collection, key by key along ix_collection_item_qa_key, oldest first;
    items without the three keys are not grouped, so never retired by this rule."""
    after = f"AND ({QA_KEY}) > (:task, :package, :architecture)" if after_key else ""
    return text(
        f"""
        SELECT ci.id, ci.name, {QA_KEY}, {LIVE_OWNER} AS live
        FROM collection_item ci
        WHERE ci.collection_id = :cid AND ci.removed_at IS NULL AND ci.category = '{QA_RESULT_ITEM}'
          AND ci.data ->> 'task' IS NOT NULL AND ci.data ->> 'package' IS NOT NULL
          AND ci.data ->> 'architecture' IS NOT NULL {after}
        ORDER BY {QA_KEY}, ci.created_at, ci.id
        LIMIT :limit
        """
    )


# Guarded: only active items not owned by a running workflow change; nothing is written twice.
RETIRE_QA = id_arrays(
    text(
        f"""
        UPDATE collection_item ci SET removed_at = now(), removed_by_workflow = :run_id
        WHERE ci.id = ANY(:ids) AND ci.removed_at IS NULL AND NOT {LIVE_OWNER}
        """
    ),
    "ids",
)


def set_timeouts(session: Session, policy: RetentionPolicy) -> None:
    """Bound this transaction's lock waits and statements (SET LOCAL, through set_config)."""
    session.execute(
        text("SELECT set_config('lock_timeout', :lock, true), set_config('statement_timeout', :stmt, true)"),
        {"lock": f"{policy.lock_timeout_ms}ms", "stmt": f"{round(policy.statement_timeout_s * 1000)}ms"},
    )
