"""Activities of campaigns: planning from the suite, sharing reference results, running tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from debian.debian_support import Version
from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import Text
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.campaigns.campaign_verdicts import store_verdicts
from activities.campaigns.pinned import given_targets
from activities.errors import translate_errors
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore
from models.campaign import (
    CampaignKind,
    CampaignPlan,
    CampaignTarget,
    ClaimReferencesInput,
    ClaimReferencesResult,
    PlanInput,
    RecordRunsInput,
    ReferenceKey,
    ReleaseReferencesInput,
    RunOutcome,
    RunResult,
    StoreReferencesInput,
    longest_first,
)
from models.vocabulary import ActivityName, CollectionCategory, ItemCategory, TaskName, TaskResult

if TYPE_CHECKING:
    from activities.suites.build_dependencies import RebuildTarget
    from activities.suites.suite import TestTarget

QA_RESULTS = CollectionCategory.QA_RESULTS
# The task history's result of a run: an UNTESTABLE run is an infrastructure error (`debflow status`).
HISTORY_RESULTS = {RunResult.FAIL: TaskResult.FAILURE, RunResult.UNTESTABLE: TaskResult.ERROR}
# Owners of the claims a batch waits for, described at once: a handful in practice (one per batch).
DESCRIBES_IN_FLIGHT = 16

_ENSURE_COLLECTION = text(
    "INSERT INTO collection (name, category, retains_artifacts) VALUES (:suite, :category, true) "
    "ON CONFLICT (category, name) DO NOTHING"
)
_COLLECTION_ID = text("SELECT id FROM collection WHERE category = :category AND name = :suite")
# Rows locked and claims inserted in name order: batches with overlapping keys wait, never deadlock.
_LOCK_ITEMS = text(
    "SELECT id, name, data FROM collection_item WHERE collection_id = :cid AND removed_at IS NULL "
    "AND name = ANY(:names) ORDER BY name FOR UPDATE"
).bindparams(bindparam("names", type_=ARRAY(Text)))
_RETIRE = text(
    "UPDATE collection_item SET removed_at = now(), removed_by_workflow = :owner "
    "WHERE id = ANY(:ids) AND removed_at IS NULL"
)
_CLAIM = text(
    "INSERT INTO collection_item (collection_id, name, category, data, created_by_workflow) "
    f"SELECT :cid, c.name, '{ItemCategory.QA_RESULT}', c.data, :owner "
    "FROM unnest(:names, :datas) AS c(name, data) ORDER BY c.name "
    "ON CONFLICT (collection_id, name) WHERE removed_at IS NULL DO NOTHING RETURNING name"
).bindparams(bindparam("names", type_=ARRAY(Text)), bindparam("datas", type_=ARRAY(JSONB)))
# Claims given up without a result: retired, so that the next claimer runs the reference.
_RELEASE = text(
    "UPDATE collection_item SET removed_at = now(), removed_by_workflow = :owner "
    "WHERE collection_id = :cid AND name = ANY(:names) AND removed_at IS NULL "
    "AND data ->> 'owner' = :owner AND data ->> 'state' = 'running'"
).bindparams(bindparam("names", type_=ARRAY(Text)))
_STORE = text(
    "UPDATE collection_item AS i SET data = r.data, artifact_id = r.artifact_id "
    "FROM unnest(:names, :datas, :artifacts) AS r(name, data, artifact_id) "
    "WHERE i.collection_id = :cid AND i.name = r.name AND i.removed_at IS NULL "
    "AND i.data ->> 'owner' = :owner AND i.data IS DISTINCT FROM r.data"
).bindparams(
    bindparam("names", type_=ARRAY(Text)),
    bindparam("datas", type_=ARRAY(JSONB)),
    bindparam("artifacts", type_=ARRAY(BigInteger)),
)


_EXPECTED = text(
    "SELECT subject, percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) FROM task_history "
    "WHERE task_name = :task AND context = :context AND subject = ANY(:sources) "
    "AND result IN ('success', 'failure') GROUP BY subject"
).bindparams(bindparam("sources", type_=ARRAY(Text)))


# Done references of these sources and architecture, newest first (along ix_collection_item_qa_key).
_PREVIOUS = text(
    "SELECT data FROM collection_item WHERE collection_id = :cid AND removed_at IS NULL "
    f"AND category = '{ItemCategory.QA_RESULT}' AND data ->> 'task' = 'autopkgtest' "
    "AND data ->> 'package' = ANY(:sources) AND data ->> 'architecture' = :architecture "
    "AND data ->> 'state' = 'done' ORDER BY data ->> 'finished_at' DESC"
).bindparams(bindparam("sources", type_=ARRAY(Text)))


def previous_results(
    session: Session, cid: int, keys: Sequence[ReferenceKey], oldest: dt.datetime
) -> dict[str, tuple[str, RunOutcome]]:
    """Key name → (version, outcome) of the newest reference finished since `oldest` for the key's
    source and architecture at its version or an earlier one, whatever the suite state (test keys only:
    a rebuild's reference is a build of exactly that source)."""
    tests = [k for k in keys if k.kind is CampaignKind.TEST]
    found: dict[str, tuple[str, RunOutcome]] = {}
    for architecture in sorted({k.architecture for k in tests}):
        wanted = [k for k in tests if k.architecture == architecture]
        rows = session.scalars(
            _PREVIOUS,
            {"cid": cid, "sources": sorted({k.source for k in wanted}), "architecture": architecture},
        ).all()
        for key in wanted:
            for data in rows:
                if (
                    data["source"] == key.source
                    and dt.datetime.fromisoformat(data["finished_at"]) >= oldest
                    and Version(data["version"]) <= Version(key.version)
                ):
                    found[key.name] = (str(data["version"]), RunOutcome.model_validate(data["outcome"]))
                    break
    return found


def history_task(kind: CampaignKind, *, simulated: bool) -> TaskName:
    """The task-history name of a campaign's runs."""
    if kind is CampaignKind.REBUILD:
        return TaskName.SIMULATED_REBUILD if simulated else TaskName.REBUILD
    return TaskName.SIMULATED_AUTOPKGTEST if simulated else TaskName.AUTOPKGTEST


def _collection_id(session: Session, suite: str) -> int:
    session.execute(_ENSURE_COLLECTION, {"suite": suite, "category": QA_RESULTS})
    return int(session.execute(_COLLECTION_ID, {"suite": suite, "category": QA_RESULTS}).scalar_one())


class CampaignTasks:
    """Campaign activities over one database and artifact store."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        scratch_dir: Path,
        expiration_days: int,
        client: Client | None = None,
        history: TaskHistoryWriter | None = None,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.scratch_dir = scratch_dir
        self.expiration_days = expiration_days
        self.client = client  # to ask whether the owners of claims still run
        self.history = history or TaskHistoryWriter()

    @activity.defn(name=ActivityName.PLAN_CAMPAIGN)
    def plan_campaign(self, params: PlanInput) -> CampaignPlan:
        from activities.suites.build_dependencies import rebuild_targets
        from activities.suites.suite import reverse_dependency_targets, source_binaries, suite_state

        with translate_errors(), self.sessions() as session:
            state = suite_state(session=session, suite=params.suite)
            binaries = params.trigger_binaries
            if not binaries and not params.all_sources and params.targets is None:
                binaries = source_binaries(session=session, suite=params.suite, source=params.trigger_source)[
                    1
                ]
            targets: Sequence[TestTarget | RebuildTarget]
            if params.targets is not None:
                targets = given_targets(session, params.suite, params.targets, params.architecture)
            elif params.kind is CampaignKind.REBUILD:
                targets = rebuild_targets(
                    session=session,
                    suite=params.suite,
                    binaries=binaries,
                    architecture=params.architecture,
                    all_sources=params.all_sources,
                    exclude_source=params.trigger_source,
                )
            else:
                targets = reverse_dependency_targets(
                    session=session,
                    suite=params.suite,
                    binaries=binaries,
                    architecture=params.architecture,
                    include_source=params.trigger_source,
                )
            expected = self._expected_durations(session, params, [t.source for t in targets])
        planned = [
            CampaignTarget(source=t.source, version=t.version, expected_s=expected.get(t.source))
            for t in targets
        ]
        if params.limit is not None:
            planned = longest_first(planned)[params.offset : params.offset + params.limit]
        return CampaignPlan(suite_state=state, trigger_binaries=list(binaries), targets=planned)

    @staticmethod
    def _expected_durations(session: Session, params: PlanInput, sources: list[str]) -> dict[str, float]:
        """Median duration of each source's recent new-side runs, from the task history (one query)."""
        rows = session.execute(
            _EXPECTED,
            {
                "task": history_task(params.kind, simulated=params.simulated),
                "context": f"{params.suite}/{params.architecture}/new",
                "sources": sources,
            },
        )
        return {source: float(seconds) for source, seconds in rows}

    @activity.defn(name=ActivityName.CLAIM_REFERENCES)
    async def claim_references(self, params: ClaimReferencesInput) -> ClaimReferencesResult:
        """Reuse fresh references, claim missing or stale ones, and name those others run now.

        A claim is stale when its lease ran out or when Temporal says its owner workflow is closed (a
        terminated batch runs no code to release its claims): such a claim is taken over at once.
        """
        if not params.keys:
            return ClaimReferencesResult()
        result = await asyncio.to_thread(self._claim, params, frozenset())
        if result.waiting and self.client is not None:
            closed = await self._closed_owners(set(result.owners.values()))
            if closed:
                result = await asyncio.to_thread(self._claim, params, closed)
        return result

    async def _closed_owners(self, owners: set[str]) -> frozenset[str]:
        """The owners whose workflow is not running (closed, or unknown to Temporal)."""
        assert self.client is not None
        client, limit = self.client, asyncio.Semaphore(DESCRIBES_IN_FLIGHT)

        async def closed(owner: str) -> bool:
            async with limit:
                try:
                    described = await client.get_workflow_handle(owner).describe()
                except RPCError as e:
                    if e.status is RPCStatusCode.NOT_FOUND:
                        return True  # gone from Temporal's retention: long closed
                    activity.logger.warning("cannot describe claim owner %s: %s", owner, e)
                    return False  # the lease clock decides
            return described.status is not WorkflowExecutionStatus.RUNNING

        found = await asyncio.gather(*(closed(o) for o in sorted(owners)))
        return frozenset(o for o, gone in zip(sorted(owners), found, strict=True) if gone)

    def _claim(self, params: ClaimReferencesInput, closed_owners: frozenset[str]) -> ClaimReferencesResult:
        suites = {k.suite for k in params.keys}
        if len(suites) != 1:
            raise ApplicationError("references of one claim must share a suite", non_retryable=True)
        now = dt.datetime.now(dt.UTC)
        oldest = now - dt.timedelta(days=params.max_age_days)
        keys = {k.name: k for k in params.keys}
        result = ClaimReferencesResult()
        with self.sessions.begin() as session:
            session.execute(text("SET LOCAL lock_timeout = '10s'"))
            cid = _collection_id(session, suites.pop())
            stale: list[int] = []
            ours: list[str] = []
            for item_id, name, data in session.execute(_LOCK_ITEMS, {"cid": cid, "names": sorted(keys)}):
                if data.get("state") == "done":
                    if dt.datetime.fromisoformat(data["finished_at"]) >= oldest:
                        result.found[name] = RunOutcome.model_validate(data["outcome"])
                    else:
                        stale.append(item_id)
                elif data.get("owner") == params.owner:
                    ours.append(name)  # a retry of our own claim
                elif data.get("owner") in closed_owners:
                    stale.append(item_id)  # its batch was terminated or failed without releasing it
                elif dt.datetime.fromisoformat(data["lease_until"]) > now:
                    result.waiting.append(name)
                    result.owners[name] = str(data.get("owner"))
                else:
                    stale.append(item_id)  # its campaign stopped without storing a result
            if stale:
                session.execute(_RETIRE, {"ids": stale, "owner": params.owner})
            wanted = sorted(set(keys) - set(result.found) - set(result.waiting) - set(ours))
            if params.previous and wanted:
                earlier = previous_results(session, cid, [keys[n] for n in wanted], oldest)
                for name, (version, outcome) in earlier.items():
                    result.found[name], result.previous[name] = outcome, version
                wanted = [n for n in wanted if n not in earlier]
            lease = (now + dt.timedelta(seconds=params.lease_s)).isoformat()
            claimed: set[str] = set()
            if wanted:
                datas = [
                    self._item_data(
                        keys[n].model_dump(), state="running", owner=params.owner, lease_until=lease
                    )
                    for n in wanted
                ]
                claimed = set(
                    session.scalars(
                        _CLAIM, {"cid": cid, "names": wanted, "datas": datas, "owner": params.owner}
                    )
                )
            result.claimed = sorted(claimed | set(ours))
            result.waiting = sorted(set(result.waiting) | (set(wanted) - claimed))
        return result

    @activity.defn(name=ActivityName.RELEASE_REFERENCES)
    def release_references(self, params: ReleaseReferencesInput) -> int:
        """Retire claims the owner gives up without a result; returns how many were still held."""
        if not params.keys:
            return 0
        with self.sessions.begin() as session:
            cid = _collection_id(session, params.keys[0].suite)
            released = session.execute(
                _RELEASE, {"cid": cid, "names": [k.name for k in params.keys], "owner": params.owner}
            )
            return int(released.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def _item_data(key: dict[str, Any], **fields: Any) -> dict[str, Any]:
        # task/package/architecture are what retention groups QA results by.
        task = "rebuild" if key.get("kind") == CampaignKind.REBUILD else "autopkgtest"
        return {"task": task, "package": key["source"], **key, **fields}

    @activity.defn(name=ActivityName.STORE_REFERENCE_RESULTS)
    def store_reference_results(self, params: StoreReferencesInput) -> int:
        """Record claimed references as done, in one transaction; returns the number of items written. An
        UNTESTABLE run is no reference: its claim is released instead, and the next campaign tries again."""
        if not params.keys:
            return 0
        untestable = [k.name for k in params.keys if params.results[k.name].result is RunResult.UNTESTABLE]
        done = [k for k in params.keys if k.name not in untestable]
        finished = dt.datetime.now(dt.UTC).isoformat()
        names = [k.name for k in done]
        datas = [
            self._item_data(
                k.model_dump(),
                state="done",
                owner=params.owner,
                finished_at=finished,
                outcome=params.results[k.name].model_dump(mode="json"),
            )
            for k in done
        ]
        artifacts = [params.results[n].log_artifact_id for n in names]
        with self.sessions.begin() as session:
            cid = _collection_id(session, params.keys[0].suite)
            if untestable:
                session.execute(_RELEASE, {"cid": cid, "names": untestable, "owner": params.owner})
            if not done:
                return 0
            written = session.execute(
                _STORE,
                {"cid": cid, "names": names, "datas": datas, "artifacts": artifacts, "owner": params.owner},
            )
            return int(written.rowcount)  # type: ignore[attr-defined]

    @activity.defn(name=ActivityName.RECORD_RUNS)
    def record_runs(self, params: RecordRunsInput) -> int:
        """Task history of a chunk's runs, in one transaction instead of one per run, after the chunk's
        verdicts (idempotent: a retry writes them again and duplicates nothing)."""
        if params.campaign_id and params.verdicts:
            with self.sessions.begin() as session:
                store_verdicts(
                    session, suite=params.suite, campaign_id=params.campaign_id, verdicts=params.verdicts
                )
        task = history_task(params.kind, simulated=params.simulated)
        workflow_id = activity.info().workflow_id
        rows = [
            {
                "task_name": task,
                "subject": run.target.source,
                "context": f"{params.suite}/{params.architecture}/{run.side}",
                "worker": run.outcome.worker,
                "workflow_id": workflow_id,
                "started_at": run.outcome.started_at or dt.datetime.now(dt.UTC),
                "duration_s": run.outcome.duration_s,
                "result": HISTORY_RESULTS.get(run.outcome.result, TaskResult.SUCCESS),
                "data": {
                    "version": run.target.version,
                    "attempt": run.attempt,
                    "simulated": params.simulated,
                    **({"cause": run.outcome.cause} if run.outcome.cause else {}),
                },
            }
            for run in params.runs
        ]
        self.history.record(self.sessions, rows)
        return len(rows)

    def database_activities(self) -> list[Callable[..., Any]]:
        """The short database work of campaigns (the control queue); tests run on test queues."""
        return [
            self.plan_campaign,
            self.claim_references,
            self.store_reference_results,
            self.release_references,
            self.record_runs,
        ]
