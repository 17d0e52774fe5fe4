"""Every target's verdict of a campaign, kept as QA results so a report can list them all.

A campaign's result carries only its notable verdicts (a workflow result is limited to 2 MB and a
campaign can have thousands of targets); the batches store every verdict here, one `debian:qa-result`
item per target and architecture in the suite's `debian:qa-results` collection, keyed by the campaign.
Retention treats them like the references (the newest few per package and architecture stay active;
removed ones are deleted after the collection's periods), and the report reads removed ones too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import Text

from models.campaign import TargetVerdict
from models.tables import QA_RESULT_ITEM, QA_RESULTS_COLLECTION

TASK = "campaign"  # the retention group's task, apart from the references' "autopkgtest"

_ENSURE_COLLECTION = text(
    "INSERT INTO collection (name, category, retains_artifacts) VALUES (:suite, :category, true) "
    "ON CONFLICT (category, name) DO NOTHING"
)
_COLLECTION_ID = text("SELECT id FROM collection WHERE category = :category AND name = :suite")
# A retried activity writes the same items again: the active one is updated only if it differs.
_UPSERT = text(
    f"""
    INSERT INTO collection_item (collection_id, name, category, data, created_by_workflow)
    SELECT :cid, v.name, '{QA_RESULT_ITEM}', v.data, :owner
    FROM unnest(:names, :datas) AS v(name, data) ORDER BY v.name
    ON CONFLICT (collection_id, name) WHERE removed_at IS NULL
    DO UPDATE SET data = excluded.data WHERE collection_item.data IS DISTINCT FROM excluded.data
    """
).bindparams(bindparam("names", type_=ARRAY(Text)), bindparam("datas", type_=ARRAY(JSONB)))
# Along ix_collection_item_campaign; removed items are read too, until expiry deletes them.
_OF_CAMPAIGN = text(
    f"""
    SELECT DISTINCT ON (ci.name) ci.data FROM collection_item ci
    WHERE ci.category = '{QA_RESULT_ITEM}' AND ci.data ->> 'campaign' = :campaign
    ORDER BY ci.name, ci.removed_at IS NULL DESC, ci.id DESC
    """
)


def item_name(campaign_id: str, verdict: TargetVerdict) -> str:
    return f"{TASK}/{campaign_id}/{verdict.source}_{verdict.architecture}"


def item_data(campaign_id: str, verdict: TargetVerdict) -> dict[str, Any]:
    # task/package/architecture group the item for retention; owner keeps it while the campaign runs.
    return {
        "task": TASK,
        "package": verdict.source,
        "campaign": campaign_id,
        "owner": campaign_id,
        **verdict.model_dump(mode="json"),
    }


def store_verdicts(session: Session, *, suite: str, campaign_id: str, verdicts: list[TargetVerdict]) -> None:
    """Write the verdicts of one chunk, in the caller's transaction (one statement)."""
    if not verdicts:
        return
    params = {"suite": suite, "category": QA_RESULTS_COLLECTION}
    session.execute(_ENSURE_COLLECTION, params)
    cid = int(session.execute(_COLLECTION_ID, params).scalar_one())
    ordered = sorted(verdicts, key=lambda v: item_name(campaign_id, v))
    session.execute(
        _UPSERT,
        {
            "cid": cid,
            "owner": campaign_id,
            "names": [item_name(campaign_id, v) for v in ordered],
            "datas": [item_data(campaign_id, v) for v in ordered],
        },
    )


def campaign_verdicts(sessions: sessionmaker[Session], campaign_id: str) -> list[TargetVerdict]:
    """Every stored verdict of a campaign (one query), by architecture and source."""
    with sessions() as session:
        rows = session.scalars(_OF_CAMPAIGN, {"campaign": campaign_id})
        found = [TargetVerdict.model_validate(data) for data in rows]
    return sorted(found, key=lambda v: (v.architecture, v.source))
