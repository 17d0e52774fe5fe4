"""debci's HTTP API (`/api/v1`) as debflow serves it, for britney2 and other debci clients:
docs/debci-api.md. Every call names its key in `Auth-Key` (403 without a valid one), except the public
results file; every refusal is one line, and nothing is stored or started before all is checked."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from activities.services import api_keys, debci_jobs, debci_results, reject_list
from models.debci import (
    MIGRATION_REFERENCE,
    PRIORITY_DEFAULT,
    BadRequest,
    Requester,
    TestRequest,
    check_package,
    check_priority,
    parse_trigger,
)
from web import debci_parse
from web.debci_forms import read_form
from web.dependencies import context
from web.files import file_response, find_file
from web.ids import bad, not_found

router = APIRouter(prefix="/api/v1", tags=["debci"])
AUTH_USER = "Auth-User"
_NUMBER = re.compile(r"[0-9]{1,18}")
# Who may read a job's log: an admin, its requester, a key that joined it, or any key when it is public.
_JOB_LOG = text(
    """
    SELECT j.log_artifact_id, j.status,
           (NOT j.is_private OR j.requester_id = :me
            OR EXISTS (SELECT 1 FROM debci_request r WHERE r.job_id = j.id AND r.requester_id = :me)) AS mine
    FROM debci_job j WHERE j.id = :id
    """
)


async def _requester(request: Request, *, required: bool = True) -> Requester | None:
    key = request.headers.get("auth-key")
    if key is None and not required:
        return None
    sessions = context(request).sessions
    found = await run_in_threadpool(api_keys.authenticate, sessions, key)
    if found is None:
        raise HTTPException(403, "invalid key: send a valid, unrevoked key in the Auth-Key header")
    return found


def _answer(requester: Requester | None, body: Any = None, status: int = 200) -> Response:
    response = Response(status_code=status) if body is None else JSONResponse(body, status_code=status)
    if requester is not None:
        response.headers[AUTH_USER] = requester.name
    return response


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    if not _NUMBER.fullmatch(value):
        raise bad(f"invalid since {value[:30]!r}: a UNIX timestamp (seconds)")
    return int(value)


def _run_id(value: str) -> int:
    if not _NUMBER.fullmatch(value):
        raise bad(f"invalid run id {value[:30]!r}: a number, as results list them")
    return int(value)


def _form_priority(form: dict[str, str]) -> int:
    return check_priority(form["priority"]) if "priority" in form else PRIORITY_DEFAULT


async def _submit(request: Request, requester: Requester, items: list[debci_parse.Item]) -> Response:
    submitted = await debci_jobs.submit_tests(context(request), requester, items)
    return _answer(requester, {"created": submitted.created, "joined": submitted.joined}, 201)


@router.get("/auth")
async def auth(request: Request) -> Response:
    """200 with `Auth-User: NAME` for a valid key, 403 otherwise."""
    return _answer(await _requester(request))


@router.post("/test/batch")
async def request_batch(request: Request) -> Response:
    """`tests`: [{"suite", "arch": [ARCH, ...], "tests": [request, ...]}, ...]; optional `priority`."""
    requester = await _requester(request)
    assert requester is not None
    form = await read_form(request)
    settings = context(request).settings
    try:
        items = debci_parse.parse_batch(
            form.get("tests"),
            architectures=settings.architectures,
            default_priority=_form_priority(form),
            limit=settings.debci_max_tests_per_call,
        )
        return await _submit(request, requester, items)
    except BadRequest as e:
        raise bad(str(e)) from None


@router.post("/test/{suite}/{arch}")
async def request_tests(request: Request, suite: str, arch: str) -> Response:
    """`tests`: a JSON array of requests (a field or an uploaded file); optional `priority`."""
    requester = await _requester(request)
    assert requester is not None
    form = await read_form(request)
    settings = context(request).settings
    try:
        debci_parse.check_target(suite, arch, settings.architectures)
        items = debci_parse.parse_suite_tests(
            form.get("tests"),
            suite,
            arch,
            default_priority=_form_priority(form),
            limit=settings.debci_max_tests_per_call,
        )
        return await _submit(request, requester, items)
    except BadRequest as e:
        raise bad(str(e)) from None


@router.post("/test/{suite}/{arch}/{package}")
async def request_package(request: Request, suite: str, arch: str, package: str) -> Response:
    """One package, as the suite has it: debci's shortcut takes no trigger, which is debflow's reference
    run (`migration-reference/0`); an optional `trigger` field names another."""
    requester = await _requester(request)
    assert requester is not None
    form = await read_form(request)
    settings = context(request).settings
    try:
        debci_parse.check_target(suite, arch, settings.architectures)
        unknown = sorted(set(form) - {"priority", "trigger"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0][:40]!r} (known: priority, trigger)")
        test = TestRequest(
            package=check_package(package),
            trigger=parse_trigger(form.get("trigger", MIGRATION_REFERENCE)),
            priority=_form_priority(form),
        )
        return await _submit(request, requester, [(suite, arch, test)])
    except BadRequest as e:
        raise bad(str(e)) from None


@router.get("/test")
async def results(request: Request, since: str | None = None) -> Response:
    """The caller's jobs updated since `since`: {"until", "results": [...]}, status null while pending."""
    requester = await _requester(request)
    assert requester is not None
    when = _since(since)
    data = await run_in_threadpool(debci_results.results_since, context(request), requester, when)
    return _answer(requester, data)


@router.get("/results.json")
async def results_file(request: Request, since: str | None = None) -> Response:
    """britney2's ADT_SWIFT_URL file: every public job (and the caller's private ones with a key)."""
    requester = await _requester(request, required=False)
    when = _since(since)
    data = await run_in_threadpool(debci_results.public_results, context(request), when, requester)
    return _answer(requester, data)


# GET as the issue names it, POST as debci has it (one operation id each in the OpenAPI schema).
@router.get("/retry/{run_id}", operation_id="debci_retry_get")
@router.post("/retry/{run_id}", operation_id="debci_retry")
async def retry(request: Request, run_id: str) -> Response:
    """Run a job again (its requester or an admin key): 201 with the new run id."""
    requester = await _requester(request)
    assert requester is not None
    number = _run_id(run_id)
    try:
        new_id = await debci_jobs.retry(context(request), requester, number)
    except LookupError:
        raise not_found(f"no run {number}") from None
    except PermissionError:
        raise HTTPException(
            403, f"run {number} is not yours: only its requester or an admin retries it"
        ) from None
    except BadRequest as e:
        raise bad(str(e)) from None
    except debci_jobs.RateLimited as e:
        raise HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after_s)}) from None
    return _answer(requester, {"run_id": new_id}, 201)


@router.get("/reject_list")
async def reject_list_json(request: Request) -> Response:
    """debci's reject list: package → suite → architecture → version → reason, `*` for any."""
    requester = await _requester(request)
    ctx = context(request)

    def load() -> dict[str, Any]:
        with ctx.sessions() as db:
            return reject_list.debci_reject_list(reject_list.list_entries(db))

    return _answer(requester, await run_in_threadpool(load))


@router.get("/logs/{run_id}")
async def job_log(request: Request, run_id: str) -> Response:
    """A job's autopkgtest log as text/plain: a private job's to its requester and admins only."""
    requester = await _requester(request)
    assert requester is not None
    number = _run_id(run_id)
    ctx = context(request)

    def respond() -> Response:
        with ctx.sessions() as db:
            row = db.execute(_JOB_LOG, {"id": number, "me": requester.id}).first()
            if row is None:
                raise not_found(f"no run {number}")
            if not (row.mine or requester.is_admin):
                raise HTTPException(403, f"run {number} is private to the key that asked for it")
            if row.log_artifact_id is None:
                state = "is pending" if row.status is None else "kept no log"
                raise not_found(f"run {number} has no log: it {state}")
            blob, size, name = find_file(db, ctx.store, row.log_artifact_id, None, include_private=True)
        return file_response(request, blob, size, name)

    response = await run_in_threadpool(respond)
    response.headers[AUTH_USER] = requester.name
    return response
