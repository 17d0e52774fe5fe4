"""debci's test requests in, their results out: what the API (web/debci_api.py) and `bench/` call.

A call's requests are checked against the imported suites first (one error names the first problem;
nothing is stored). Identical requests while one is pending are one job: `ux_debci_job_pending` lets
exactly one pending row exist per job key, so a request that finds one joins it. The jobs a call
creates are run by one DebciJobs workflow per suite and architecture, started *inside* the call's
transaction: if the start fails nothing is committed; if the commit fails the workflow finds its
transaction aborted (pg_xact_status) and runs nothing. Either way nothing is half-done.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import BigInteger, Boolean, Integer, Text
from temporalio.client import Client
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from models import identifiers
from models.campaign import Simulation
from models.debci import (
    BadRequest,
    JobBatchInput,
    Requester,
    TestRequest,
    job_key,
    temporal_priority,
)
from models.suite import SUITE_CATEGORY
from workflows import search_attributes as sa

JOBS_PER_BATCH = 6000  # four pages of workflows.debci_jobs (each run of a batch runs one page)


class Context(Protocol):
    """What the calls need of the composition root (worker.context.Context is one)."""

    @property
    def settings(self) -> Any: ...  # worker.settings.Settings: debci_*, architectures, task_queue

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    async def temporal(self) -> Client: ...


class RateLimited(Exception):
    """Too many retries by one key in the last hour."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many retries in the last hour; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class Submitted:
    created: list[int] = field(default_factory=list)  # run ids of new jobs
    joined: list[int] = field(default_factory=list)  # run ids of pending jobs the requests joined
    batch_workflow_ids: list[str] = field(default_factory=list)


_SUITES = text(
    "SELECT name, id FROM collection WHERE category = :category AND name = ANY(:names)"
).bindparams(bindparam("names", type_=ARRAY(Text)))
# The newest version of each named source in a suite (source items relate to their source name).
_VERSIONS = text(
    "SELECT r.package, i.data ->> 'version' FROM suite_relation r "
    "JOIN collection_item i ON i.id = r.item_id "
    "WHERE r.collection_id = :cid AND r.kind = 'binary' AND r.package = ANY(:names) AND i.removed_at IS NULL"
).bindparams(bindparam("names", type_=ARRAY(Text)))
_HAS_ARCHITECTURE = text(
    "SELECT EXISTS (SELECT 1 FROM suite_relation WHERE collection_id = :cid AND architecture = :arch)"
)
_REJECTED = text(
    "SELECT package, suite, architecture FROM reject_list WHERE package = ANY(:names) "
    "AND (suite IS NULL OR suite = :suite) AND (architecture IS NULL OR architecture = :arch) LIMIT 1"
).bindparams(bindparam("names", type_=ARRAY(Text)))
_NEW_IDS = text("SELECT nextval(pg_get_serial_sequence('debci_job', 'id')) FROM generate_series(1, :n)")
_INSERT_JOBS = text(
    "INSERT INTO debci_job (id, job_key, suite, architecture, package, version, trigger, pins, priority, "
    "is_private, requester_id, batch_workflow_id, retry_of) "
    "SELECT j.id, j.key, :suite, :arch, j.package, j.version, j.trigger, j.pins::jsonb, j.priority, "
    "j.private, :requester, j.batch, :retry_of "
    "FROM unnest(:ids, :keys, :packages, :versions, :triggers, :pins, :priorities, :privates, :batches) "
    "AS j(id, key, package, version, trigger, pins, priority, private, batch) "
    "ON CONFLICT (job_key) WHERE status IS NULL DO NOTHING RETURNING id, job_key"
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)),
    bindparam("keys", type_=ARRAY(Text)),
    bindparam("packages", type_=ARRAY(Text)),
    bindparam("versions", type_=ARRAY(Text)),
    bindparam("triggers", type_=ARRAY(Text)),
    bindparam("pins", type_=ARRAY(Text)),  # JSON text: nested lists would make a multidimensional array
    bindparam("priorities", type_=ARRAY(Integer)),
    bindparam("privates", type_=ARRAY(Boolean)),
    bindparam("batches", type_=ARRAY(Text)),
)
_RECENT_JOBS = text(
    "SELECT DISTINCT ON (job_key) job_key, id FROM debci_job WHERE job_key = ANY(:keys) "
    "AND (status IS NULL OR (status <> 'tmpfail' AND updated_at > now() - make_interval(secs => :window))) "
    "ORDER BY job_key, id DESC"
).bindparams(bindparam("keys", type_=ARRAY(Text)))
_LATEST = text(
    "SELECT DISTINCT ON (job_key) job_key, id FROM debci_job WHERE job_key = ANY(:keys) "
    "ORDER BY job_key, id DESC"
).bindparams(bindparam("keys", type_=ARRAY(Text)))
_INSERT_REQUESTS = text(
    "INSERT INTO debci_request (requester_id, job_id) SELECT :requester, unnest(:ids) ON CONFLICT DO NOTHING"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))
_TXID = text("SELECT pg_current_xact_id()::text::bigint")


def _check(
    session: Session, suite: str, arch: str, tests: list[TestRequest], known_arches: list[str]
) -> list[str]:
    """Refuse what cannot run (BadRequest); the version of each test's package, in order."""
    suites = {suite} | {p.suite for t in tests for p in t.pins}
    found: dict[str, int] = dict(
        session.execute(_SUITES, {"category": SUITE_CATEGORY, "names": sorted(suites)}).all()
    )
    if suite not in found:
        raise BadRequest(f"unknown suite {suite[:40]!r}: not imported (debflow import-suite)")
    missing = sorted(suites - set(found))
    if missing:
        raise BadRequest(f"pin-packages names suite {missing[0][:40]!r}, which is not imported")
    if arch not in known_arches or not session.scalar(_HAS_ARCHITECTURE, {"cid": found[suite], "arch": arch}):
        raise BadRequest(f"unknown architecture {arch[:32]!r} for suite {suite!r}")
    names = sorted({t.package for t in tests})
    rejected = session.execute(_REJECTED, {"names": names, "suite": suite, "arch": arch}).first()
    if rejected is not None:
        raise BadRequest(f"package {rejected[0]!r} is on the reject list for {suite}/{arch}")
    versions = _newest(session, found[suite], names)
    unknown = [n for n in names if n not in versions]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise BadRequest(f"package {unknown[0]!r} is not in suite {suite!r}{more}")
    # A test whose own source is pinned runs that suite's version of its tests.
    pinned: dict[str, dict[str, str]] = {}
    for pin_suite in {p.suite for t in tests for p in t.pins}:
        wanted = sorted(
            {t.package for t in tests for p in t.pins if p.suite == pin_suite and t.package in p.sources}
        )
        pinned[pin_suite] = _newest(session, found[pin_suite], wanted) if wanted else {}
    result = []
    for t in tests:
        version = versions[t.package]
        for pin in t.pins:
            if t.package in pin.sources:
                if t.package not in pinned[pin.suite]:
                    raise BadRequest(f"pin-packages takes src:{t.package} from {pin.suite!r}, which lacks it")
                version = pinned[pin.suite][t.package]
        result.append(version)
    return result


def _newest(session: Session, collection_id: int, names: list[str]) -> dict[str, str]:
    from debian.debian_support import Version

    newest: dict[str, str] = {}
    for name, version in session.execute(_VERSIONS, {"cid": collection_id, "names": names}):
        if name not in newest or Version(version) > Version(newest[name]):
            newest[name] = version
    return newest


async def submit_tests(
    context: Context,
    requester: Requester,
    items: list[tuple[str, str, TestRequest]],
    *,
    simulation: Simulation | None = None,
    retry_of: int | None = None,
) -> Submitted:
    """Store the requests of one call and start the workflows that run their new jobs (see the module
    docstring); `simulation` runs them with the SIMULATED executor (load tests and benchmarks only)."""
    settings = context.settings
    if not items:
        raise BadRequest("no tests requested")
    if len(items) > settings.debci_max_tests_per_call:
        raise BadRequest(
            f"{len(items)} tests in one call; at most {settings.debci_max_tests_per_call} are accepted"
        )
    groups: dict[tuple[str, str], list[TestRequest]] = defaultdict(list)
    for suite, arch, request in items:
        groups[(suite, arch)].append(request)
    client = await context.temporal()
    submitted = Submitted()
    with context.sessions.begin() as session:
        checked = {key: _check(session, *key, tests, settings.architectures) for key, tests in groups.items()}
        txid = int(session.execute(_TXID).scalar_one())
        starts: list[tuple[str, JobBatchInput, int]] = []
        for (suite, arch), tests in groups.items():
            ids = list(session.scalars(_NEW_IDS, {"n": len(tests)}))
            keys = [job_key(suite, arch, t, requester.id) for t in tests]
            # An identical request joins a pending job, or one decided within the window (britney2
            # resending after a crash runs nothing twice; a tmpfail may be asked again); a retry never
            # joins a decided job.
            window = 0 if retry_of is not None else settings.debci_dedup_window_s
            existing: dict[str, int] = dict(
                session.execute(_RECENT_JOBS, {"keys": sorted(set(keys)), "window": window}).all()
            )
            fresh = [i for i, k in enumerate(keys) if k not in existing]
            tests = [tests[i] for i in fresh]
            versions = [checked[(suite, arch)][i] for i in fresh]
            keys_fresh = [keys[i] for i in fresh]
            # One workflow per JOBS_PER_BATCH new jobs: a call of 25,000 runs in parallel batches (one
            # workflow's updates are serialised by the server), each over its own id range.
            ranges = [ids[i : i + JOBS_PER_BATCH] for i in range(0, len(fresh), JOBS_PER_BATCH)]
            batches = {
                (r[0], r[-1]): identifiers.bounded(
                    f"debci-{suite}-{arch}-{r[0]}-{r[-1]}", identifiers.WORKFLOW_ID_MAX
                )
                for r in ranges
            }
            batch_of = [batches[(r[0], r[-1])] for r in ranges for _ in r]
            created: dict[int, str] = dict(
                session.execute(
                    _INSERT_JOBS,
                    {
                        "suite": suite,
                        "arch": arch,
                        "requester": requester.id,
                        "batches": batch_of,
                        "retry_of": retry_of,
                        "ids": ids[: len(fresh)],
                        "keys": keys_fresh,
                        "packages": [t.package for t in tests],
                        "versions": versions,
                        "triggers": [t.trigger for t in tests],
                        "pins": [json.dumps([p.debci() for p in t.pins]) for t in tests],
                        "priorities": [t.priority for t in tests],
                        "privates": [t.is_private for t in tests],
                    },
                ).all()
                if fresh
                else []
            )
            # Identical to an earlier request of this call, or to a job a concurrent call just made.
            raced = sorted(set(keys) - set(existing) - set(created.values()))
            if raced:
                existing |= dict(session.execute(_LATEST, {"keys": raced}).all())
            joined = sorted(set(existing.values()))
            session.execute(
                _INSERT_REQUESTS, {"requester": requester.id, "ids": sorted(set(created) | set(joined))}
            )
            submitted.created += sorted(created)
            submitted.joined += joined
            for (first, last), batch in batches.items():
                mine = [i for i in created if first <= i <= last]
                if not mine:
                    continue  # every request of this range joined an existing job
                top = max(t.priority for t, i in zip(tests, ids, strict=False) if first <= i <= last)
                params = JobBatchInput(
                    suite=suite,
                    architecture=arch,
                    first_job=first,
                    last_job=last,
                    txid=txid,
                    requester=identifiers.bounded(requester.name, identifiers.FAIRNESS_KEY_MAX),
                    simulation=simulation,
                    tests_in_flight=settings.debci_tests_in_flight,
                    test_timeout_s=settings.autopkgtest_timeout_s,
                    tmpfail_tries=settings.debci_tmpfail_tries,
                    tmpfail_backoff_s=settings.debci_tmpfail_backoff_s,
                )
                starts.append((batch, params, top))
        for batch, params, top in starts:
            await _start(client, settings.task_queue, batch, params, top, len(submitted.created))
            submitted.batch_workflow_ids.append(batch)
    return submitted


async def _start(
    client: Any, task_queue: str, batch: str, params: JobBatchInput, priority: int, jobs: int
) -> None:
    from workflows.debci_jobs import DebciJobsWorkflow

    mode = "SIMULATED " if params.simulation is not None else ""
    # The ids are fresh from the sequence: only a retried call of this same transaction finds it started.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            DebciJobsWorkflow.run,
            params,
            id=batch,
            task_queue=task_queue,
            priority=Priority(priority_key=temporal_priority(priority), fairness_key=params.requester),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.KIND, "debci"),
                    SearchAttributePair(sa.SUITE, params.suite),
                    SearchAttributePair(sa.ARCHITECTURES, [params.architecture]),
                    SearchAttributePair(sa.RESULT, "running"),
                ]
            ),
            static_summary=f"{mode}debci jobs {params.first_job}-{params.last_job} of {params.requester} "
            f"in {params.suite}/{params.architecture}",
        )


_JOB = text(
    "SELECT j.id, j.suite, j.architecture, j.package, j.trigger, j.pins, j.priority, j.is_private, "
    "j.requester_id, k.name AS requester_name, j.status "
    "FROM debci_job j JOIN api_key k ON k.id = j.requester_id WHERE j.id = :id"
)
_RECENT_RETRIES = text(
    "SELECT count(*), min(created_at) FROM debci_job "
    "WHERE requester_id = :requester AND retry_of IS NOT NULL "
    "AND created_at > now() - interval '1 hour'"
)


async def retry(context: Context, requester: Requester, run_id: int) -> int:
    """debci's retry: the same test again, for its requester or an admin; refused while it is pending."""
    from models.campaign import Pin

    with context.sessions() as session:
        job = session.execute(_JOB, {"id": run_id}).first()
        if job is None:
            raise LookupError(f"unknown run id {run_id}")
        if job.requester_id != requester.id and not requester.is_admin:
            raise PermissionError(f"run {run_id} was requested by another key")
        if job.status is None:
            raise BadRequest(f"run {run_id} is still pending: nothing to retry")
        count, oldest = session.execute(_RECENT_RETRIES, {"requester": job.requester_id}).one()
        if count >= context.settings.debci_retries_per_hour:
            wait = 3600 - (dt.datetime.now(dt.UTC) - oldest).total_seconds()
            raise RateLimited(max(1, math.ceil(wait)))
    request = TestRequest(
        package=job.package,
        trigger=job.trigger,
        pins=[Pin(packages=p[0].split(","), suite=p[1]) for p in job.pins],
        priority=job.priority,
        is_private=job.is_private,
    )
    # The new job is the original requester's (their results list shows it), as debci does.
    owner = Requester(id=job.requester_id, name=job.requester_name)
    submitted = await submit_tests(context, owner, [(job.suite, job.architecture, request)], retry_of=run_id)
    if not submitted.created:
        raise BadRequest(f"the test of run {run_id} is pending again (run {submitted.joined[0]})")
    return submitted.created[0]
