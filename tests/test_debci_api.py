"""debci's API over HTTP (web/debci_api.py): keys, the reject list, strict parsing of test requests,
private logs. The real application, PostgreSQL and Temporal dev server; every refusal is one line with
nothing stored."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.services import api_keys, reject_list
from activities.storage.store import ArtifactStore, NewArtifact
from models.tables import ApiKey, DebciJob
from models.vocabulary import ArtifactCategory
from support.site_server import serving
from tests.conftest import subprocess_env
from tests.debci_support import debci_workflows, job_rows, no_batches_left, synthetic_suite  # noqa: F401 (a fixture)
from web.app import create_app
from worker.context import Context
from worker.settings import PROJECT_ROOT, Settings

LIMIT = 3  # debci_max_tests_per_call in these tests
RETRIES = 2  # debci_retries_per_hour

# Batches a test leaves pending are ended after it (tests/debci_support.py).
pytestmark = pytest.mark.usefixtures("no_batches_left")


@dataclass
class Keys:
    tag: str
    user: str  # key of requester "user-TAG"
    other: str
    admin: str
    revoked: str


@pytest.fixture
def keys(sessions: sessionmaker[Session]) -> Keys:
    tag = uuid.uuid4().hex[:8]
    made = {
        role: api_keys.add_key(sessions, f"{role}-{tag}", admin=role == "admin")
        for role in ("user", "other", "admin", "revoked")
    }
    api_keys.revoke_key(sessions, f"revoked-{tag}")
    return Keys(tag=tag, **made)


@pytest.fixture
def api_context(settings: Settings) -> Iterator[Context]:
    limits = {"debci_max_tests_per_call": LIMIT, "debci_retries_per_hour": RETRIES}
    context = Context(settings.model_copy(update=limits), pool_size=4)
    yield context
    context.close()


@pytest.fixture
async def http(api_context: Context) -> AsyncIterator[httpx.AsyncClient]:
    with serving(create_app(api_context, live_ttl_s=0.5)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


def one_line(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("text/plain"), response.headers["content-type"]
    lines = response.text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), response.text
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def as_json(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


GOOD = {"package": "hello-debflow", "trigger": "greeter/1.1"}


# --- keys -------------------------------------------------------------------------------------------


async def test_auth_names_the_key_and_refuses_missing_wrong_and_revoked_keys(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    ok = await http.get("/api/v1/auth", headers={"Auth-Key": keys.user})
    assert ok.status_code == 200 and ok.headers["auth-user"] == f"user-{keys.tag}"
    one_line(await http.get("/api/v1/auth"), 403, "invalid key")
    one_line(await http.get("/api/v1/auth", headers={"Auth-Key": keys.user + "x"}), 403, "invalid key")
    one_line(await http.get("/api/v1/auth", headers={"Auth-Key": keys.revoked}), 403, "invalid key")
    one_line(await http.get("/api/v1/auth", headers={"Auth-Key": "k" * 5000}), 403, "invalid key")


def _debflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(settings),
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def _one_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_keys_cli_prints_a_key_once_stores_its_hash_and_revokes_it(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    name = f"britney-{uuid.uuid4().hex[:8]}"
    added = _debflow(settings, "keys", "add", name)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert len(key) >= 40 and "\n" not in key and "not" in added.stderr and "stored" in added.stderr
    with sessions() as db:
        row = db.execute(select(ApiKey).where(ApiKey.name == name)).scalar_one()
        assert row.key_sha256 == api_keys.key_hash(key) and row.key_sha256 != key and not row.is_admin
        # Nowhere in the table is the key itself.
        assert (
            db.execute(text("SELECT count(*) FROM api_key WHERE key_sha256 = :k"), {"k": key}).scalar() == 0
        )
    assert api_keys.authenticate(sessions, key) is not None

    listed = _debflow(settings, "keys", "list")
    assert listed.returncode == 0 and name in listed.stdout and key not in listed.stdout

    _one_error(_debflow(settings, "keys", "add", name), "exists")
    _one_error(_debflow(settings, "keys", "add", "no spaces"), "invalid key name")
    _one_error(_debflow(settings, "keys", "revoke", f"{name}-unknown"), "no key named")

    revoked = _debflow(settings, "keys", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    assert api_keys.authenticate(sessions, key) is None
    _one_error(_debflow(settings, "keys", "revoke", name), "revoked already")

    admin = _debflow(settings, "keys", "add", f"{name}-admin", "--admin")
    found = api_keys.authenticate(sessions, admin.stdout.strip())
    assert found is not None and found.is_admin and found.name == f"{name}-admin"


# --- the reject list --------------------------------------------------------------------------------


async def test_reject_list_cli_service_and_debci_json(
    http: httpx.AsyncClient, keys: Keys, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    pkg = f"rejected-{keys.tag}"
    added = _debflow(settings, "reject-list", "add", pkg, "--suite", "sid", "--reason", "hangs  the\ntestbed")
    assert added.returncode == 0, added.stderr
    assert _debflow(settings, "reject-list", "add", pkg, "--arch", "i386").returncode == 0
    _one_error(_debflow(settings, "reject-list", "add", "Not_A_Name"), "invalid package name")
    _one_error(_debflow(settings, "reject-list", "add", pkg, "--arch", "vax"), "unknown architecture")
    _one_error(
        _debflow(settings, "reject-list", "remove", pkg, "--suite", "bookworm"), "no reject-list entry"
    )
    assert pkg in _debflow(settings, "reject-list", "list").stdout

    with sessions() as db:
        assert reject_list.is_rejected(db, pkg, "sid", "amd64")
        assert reject_list.is_rejected(db, pkg, "bookworm", "i386")
        assert not reject_list.is_rejected(db, pkg, "bookworm", "amd64")
        assert not reject_list.is_rejected(db, f"other-{keys.tag}", "sid", "amd64")
        assert reject_list.rejected_of(db, [pkg, f"other-{keys.tag}"], "sid", "arm64") == {pkg}

    one_line(await http.get("/api/v1/reject_list"), 403, "invalid key")
    answer = await http.get("/api/v1/reject_list", headers={"Auth-Key": keys.user})
    assert answer.status_code == 200 and answer.headers["auth-user"] == f"user-{keys.tag}"
    assert answer.json()[pkg] == {"sid": {"*": {"*": "hangs the testbed"}}, "*": {"i386": {"*": ""}}}

    assert _debflow(settings, "reject-list", "remove", pkg, "--suite", "sid").returncode == 0
    with sessions() as db:
        assert not reject_list.is_rejected(db, pkg, "sid", "amd64")
    answer = await http.get("/api/v1/reject_list", headers={"Auth-Key": keys.user})
    assert answer.json()[pkg] == {"*": {"i386": {"*": ""}}}


# --- bad input: one line, nothing stored ------------------------------------------------------------

TEST_URL = "/api/v1/test/sid/amd64"
BAD_TESTS: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("no tests field", {"priority": "3"}, 400, ("'tests' is missing",)),
    ("not JSON", {"tests": "[{"}, 400, ("not valid JSON",)),
    ("an object, not an array", {"tests": json.dumps(GOOD)}, 400, ("must be a JSON array", "object")),
    ("an empty array", {"tests": "[]"}, 400, ("empty array",)),
    ("over the limit", {"tests": as_json(*[GOOD] * (LIMIT + 1))}, 400, (f"at most {LIMIT}",)),
    ("an item that is no object", {"tests": "[1]"}, 400, ("tests[0] must be an object",)),
    (
        "an unknown key",
        {"tests": as_json({**GOOD, "pin_packages": []})},
        400,
        ("tests[0]", "'pin_packages'"),
    ),
    ("no package", {"tests": as_json({"trigger": "a/1"})}, 400, ("package is missing",)),
    (
        "an invalid package",
        {"tests": as_json({**GOOD, "package": "Foo;rm"})},
        400,
        ("invalid package name",),
    ),
    ("no trigger", {"tests": as_json({"package": "hello"})}, 400, ("trigger is missing",)),
    (
        "an invalid trigger",
        {"tests": as_json({**GOOD, "trigger": "foo 1.0"})},
        400,
        ("invalid trigger word",),
    ),
    (
        "pins that are no pairs",
        {"tests": as_json({**GOOD, "pin-packages": [["src:foo"]]})},
        400,
        ("not a [packages, suite] pair",),
    ),
    (
        "a pinned suite twice",
        {"tests": as_json({**GOOD, "pin-packages": [["foo", "sid"], ["bar", "sid"]]})},
        400,
        ("twice",),
    ),
    ("is_private as a string", {"tests": as_json({**GOOD, "is_private": "yes"})}, 400, ("true or false",)),
    (
        "extra apt sources",
        {"tests": as_json({**GOOD, "extra-apt-sources": ["deb http://x/ sid main"]})},
        400,
        ("extra-apt-sources is not supported",),
    ),
    (
        "an item priority of 11",
        {"tests": as_json({**GOOD, "priority": 11})},
        400,
        ("invalid priority 11",),
    ),
    ("a form priority of high", {"tests": as_json(GOOD), "priority": "high"}, 400, ("invalid priority",)),
    ("priority true", {"tests": as_json({**GOOD, "priority": True})}, 400, ("invalid priority",)),
]


@pytest.mark.parametrize(("case", "form", "status", "words"), BAD_TESTS, ids=[c[0] for c in BAD_TESTS])
async def test_bad_tests_are_one_line_and_store_nothing(
    http: httpx.AsyncClient,
    keys: Keys,
    engine: Engine,
    case: str,
    form: dict[str, Any],
    status: int,
    words: tuple[str, ...],
) -> None:
    before = job_rows(engine)
    one_line(await http.post(TEST_URL, data=form, headers={"Auth-Key": keys.user}), status, *words)
    # The same as an uploaded file, where there is a tests field.
    if "tests" in form:
        files = {"tests": ("tests.json", form["tests"].encode(), "application/json")}
        rest = {k: v for k, v in form.items() if k != "tests"}
        one_line(
            await http.post(TEST_URL, data=rest, files=files, headers={"Auth-Key": keys.user}), status, *words
        )
    assert job_rows(engine) == before


BAD_CALLS: list[tuple[str, str, str, dict[str, Any], int, tuple[str, ...]]] = [
    ("no key", "POST", TEST_URL, {"data": {"tests": as_json(GOOD)}}, 403, ("invalid key",)),
    (
        "a wrong key",
        "POST",
        TEST_URL,
        {"data": {"tests": as_json(GOOD)}, "key": "nope"},
        403,
        ("invalid key",),
    ),
    (
        "a revoked key",
        "POST",
        TEST_URL,
        {"data": {"tests": as_json(GOOD)}, "key": "revoked"},
        403,
        ("invalid",),
    ),
    (
        "batch without a key",
        "POST",
        "/api/v1/test/batch",
        {"data": {"tests": "[]"}, "key": None},
        403,
        ("key",),
    ),
    (
        "an unknown architecture",
        "POST",
        "/api/v1/test/sid/vax",
        {"data": {"tests": as_json(GOOD)}},
        400,
        ("vax",),
    ),
    (
        "an invalid suite",
        "POST",
        "/api/v1/test/Sid!/amd64",
        {"data": {"tests": as_json(GOOD)}},
        400,
        ("suite",),
    ),
    (
        "JSON instead of a form",
        "POST",
        TEST_URL,
        {"content": as_json(GOOD), "headers": {"Content-Type": "application/json"}},
        400,
        ("unsupported Content-Type",),
    ),
    ("a field twice", "POST", TEST_URL, {"content": "tests=[]&tests=[]", "form": True}, 400, ("2 times",)),
    (
        "a file that is not UTF-8",
        "POST",
        TEST_URL,
        {"files": {"tests": ("t.json", b"\xff\xfe[]", "application/json")}},
        400,
        ("not UTF-8",),
    ),
    (
        "a batch group without arch",
        "POST",
        "/api/v1/test/batch",
        {"data": {"tests": json.dumps([{"suite": "sid", "tests": [GOOD]}])}},
        400,
        ("tests[0]: arch must be",),
    ),
    (
        "a batch group with an unknown architecture",
        "POST",
        "/api/v1/test/batch",
        {"data": {"tests": json.dumps([{"suite": "sid", "arch": ["amd64", "vax"], "tests": [GOOD]}])}},
        400,
        ("unknown architecture", "vax"),
    ),
    (
        "a batch group with an unknown key",
        "POST",
        "/api/v1/test/batch",
        {"data": {"tests": json.dumps([{"suite": "sid", "arch": ["amd64"], "tests": [GOOD], "x": 1}])}},
        400,
        ("unknown key 'x'",),
    ),
    (
        "a batch over the limit across architectures",
        "POST",
        "/api/v1/test/batch",
        {
            "data": {
                "tests": json.dumps([{"suite": "sid", "arch": ["amd64", "arm64"], "tests": [GOOD, GOOD]}])
            }
        },
        400,
        (f"at most {LIMIT}",),
    ),
    (
        "a bad request inside a batch",
        "POST",
        "/api/v1/test/batch",
        {
            "data": {
                "tests": json.dumps([{"suite": "sid", "arch": "amd64", "tests": [GOOD, {"package": "x!"}]}])
            }
        },
        400,
        ("tests[0].tests[1]", "invalid package name"),
    ),
    (
        "one package: an invalid name",
        "POST",
        "/api/v1/test/sid/amd64/Bad_Name",
        {},
        400,
        ("invalid package",),
    ),
    (
        "one package: an unknown field",
        "POST",
        "/api/v1/test/sid/amd64/hello",
        {"data": {"pin-packages": "[]"}},
        400,
        ("unknown field 'pin-packages'",),
    ),
    (
        "one package: a bad trigger",
        "POST",
        "/api/v1/test/sid/amd64/hello",
        {"data": {"trigger": "hello"}},
        400,
        ("invalid trigger word",),
    ),
    ("since that is no number", "GET", "/api/v1/test?since=yesterday", {}, 400, ("invalid since",)),
    ("a retry of no number", "GET", "/api/v1/retry/12x", {}, 400, ("invalid run id",)),
    ("a log of no number", "GET", "/api/v1/logs/-1", {}, 400, ("invalid run id",)),
    ("a log of no run", "GET", "/api/v1/logs/999999999999", {}, 404, ("no run 999999999999",)),
    ("results with a wrong key", "GET", "/api/v1/results.json", {"key": "nope"}, 403, ("invalid key",)),
    ("a GET of a POST route", "GET", TEST_URL, {}, 405, ("Method Not Allowed",)),
]


@pytest.mark.parametrize(
    ("case", "method", "url", "call", "status", "words"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
async def test_bad_calls_are_one_line_and_store_nothing(
    http: httpx.AsyncClient,
    keys: Keys,
    engine: Engine,
    case: str,
    method: str,
    url: str,
    call: dict[str, Any],
    status: int,
    words: tuple[str, ...],
) -> None:
    call = dict(call)
    key = call.pop("key", "user")
    headers = dict(call.pop("headers", {}))
    if call.pop("form", False):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if key in ("user", "revoked"):
        headers["Auth-Key"] = getattr(keys, key)
    elif key is not None:
        headers["Auth-Key"] = key
    if case == "no key":
        headers.pop("Auth-Key")
    before = job_rows(engine)
    one_line(await http.request(method, url, headers=headers, **call), status, *words)
    assert job_rows(engine) == before


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every object inside a JSON document."""
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _dicts(item)


# --- private jobs' logs -----------------------------------------------------------------------------


async def test_a_private_jobs_log_is_served_to_its_requester_only(
    http: httpx.AsyncClient, keys: Keys, store: ArtifactStore, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    source, workflow_id = f"secret-{keys.tag}", f"debci-jobs-{keys.tag}"
    public_log, private_log = tmp_path / "public", tmp_path / "private"
    public_log.write_text("public log text\n")
    private_log.write_text("private log text\n")
    data = {
        "source": source,
        "version": "1.0",
        "suite": "sid",
        "architecture": "amd64",
        "result": "success",
        "exit_code": 0,
        "virt_server": "host:null",
        "tests": {"greets": {"status": "PASS"}},
    }
    # A public run of the same package in the same workflow: what the pages do show.
    public_id, private_id = store.register(
        [
            NewArtifact(category=ArtifactCategory.AUTOPKGTEST, data=data, files={"log": public_log}),
            NewArtifact(
                category=ArtifactCategory.AUTOPKGTEST,
                data={**data, "private": True},
                files={"log": private_log},
            ),
        ],
        workflow_id=workflow_id,
        activity_id="seed",
    )
    owner = api_keys.authenticate(sessions, keys.user)
    assert owner is not None
    with sessions.begin() as db:
        job = DebciJob(
            job_key=uuid.uuid4().hex * 2,
            suite="sid",
            architecture="amd64",
            package=source,
            version="1.0",
            trigger="greeter/1.1",
            is_private=True,
            requester_id=owner.id,
            status="pass",
            exit_code=0,
            log_artifact_id=private_id,
            batch_workflow_id=workflow_id,
        )
        db.add(job)
        db.flush()
        run_id = job.id

    # The site: neither the log nor the file route, nor any page or JSON, shows it; the public run shows.
    assert (await http.get(f"/artifacts/{public_id}/log")).text == "public log text\n"
    one_line(await http.get(f"/artifacts/{private_id}/log"), 404, f"no artifact {private_id}")
    one_line(await http.get(f"/artifacts/{private_id}/files/log"), 404, f"no artifact {private_id}")
    for path in (f"/api/packages/{source}/sid/amd64", f"/api/runs/{workflow_id}"):
        ids = {a.get("artifact_id", a.get("id")) for a in _dicts((await http.get(path)).json())}
        assert public_id in ids and private_id not in ids, (path, ids)
    for path in (f"/packages/{source}", f"/packages/{source}/sid/amd64", f"/runs/{workflow_id}"):
        page = (await http.get(path)).text
        assert f"/artifacts/{public_id}/" in page and f"/artifacts/{private_id}/" not in page, path
    for path in ("/", "/status", f"/api/packages/{source}"):
        assert f"/artifacts/{private_id}/" not in (await http.get(path)).text, path

    # The API: its requester and admins read it; another key is refused.
    mine = await http.get(f"/api/v1/logs/{run_id}", headers={"Auth-Key": keys.user})
    assert mine.status_code == 200 and mine.text == "private log text\n"
    assert mine.headers["content-type"].startswith("text/plain")
    admin = await http.get(f"/api/v1/logs/{run_id}", headers={"Auth-Key": keys.admin})
    assert admin.status_code == 200 and admin.text == "private log text\n"
    one_line(await http.get(f"/api/v1/logs/{run_id}", headers={"Auth-Key": keys.other}), 403, "private")
    one_line(await http.get(f"/api/v1/logs/{run_id}"), 403, "invalid key")


# --- calls that reach the jobs service ------------------------------------------------------------


@pytest.fixture
def suite(tmp_path: Path, sessions: sessionmaker[Session]) -> tuple[str, str]:
    """A synthetic imported suite: (its name, the trigger source); dependants `TRIGGER-user0000`…"""
    return synthetic_suite(tmp_path, sessions, "api", 3)


async def test_refusals_of_the_jobs_service_store_nothing_and_start_nothing(
    http: httpx.AsyncClient,
    keys: Keys,
    engine: Engine,
    client: Client,
    suite: tuple[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    name, trigger = suite
    user = f"{trigger}-user0000"
    good = {"package": user, "trigger": f"{trigger}/1.1"}
    reject_list.add_entry(
        sessions, f"{trigger}-user0002", suite=name, reason="flaky", architectures=settings.architectures
    )
    cases = [
        (f"/api/v1/test/nosuch-{keys.tag}/amd64", as_json(good), ("unknown suite", "not imported")),
        (f"/api/v1/test/{name}/amd64", as_json({**good, "package": "absent-pkg"}), ("absent-pkg",)),
        (
            f"/api/v1/test/{name}/amd64",
            as_json({**good, "pin-packages": [[f"src:{trigger}", f"gone-{keys.tag}"]]}),
            ("not imported",),
        ),
        (f"/api/v1/test/{name}/amd64", as_json({**good, "package": f"{trigger}-user0002"}), ("reject list",)),
        # One bad request among good ones refuses the whole call.
        (f"/api/v1/test/{name}/amd64", as_json(good, {**good, "package": "absent-pkg"}), ("absent-pkg",)),
    ]
    before = job_rows(engine)
    for url, tests, words in cases:
        one_line(await http.post(url, data={"tests": tests}, headers={"Auth-Key": keys.user}), 400, *words)
    one_line(
        await http.post(f"/api/v1/test/{name}/amd64/{trigger}-user0002", headers={"Auth-Key": keys.user}),
        400,
        "reject list",
    )
    assert job_rows(engine) == before
    assert await debci_workflows(client, name) == 0


async def test_requests_join_pending_ones_and_retries_are_checked(
    http: httpx.AsyncClient,
    keys: Keys,
    engine: Engine,
    suite: tuple[str, str],
    api_context: Context,
) -> None:
    name, trigger = suite
    tests = as_json(*({"package": f"{trigger}-user{i:04d}", "trigger": f"{trigger}/1.1"} for i in range(2)))
    user = {"Auth-Key": keys.user}
    # No worker runs them: the jobs stay pending.
    created = await http.post(
        f"/api/v1/test/{name}/amd64", data={"tests": tests, "priority": "7"}, headers=user
    )
    assert created.status_code == 201 and created.headers["auth-user"] == f"user-{keys.tag}", created.text
    run_ids = created.json()["created"]
    assert len(run_ids) == 2 and created.json()["joined"] == []
    # The same again, as an uploaded file, joins them.
    files = {"tests": ("tests.json", tests.encode(), "application/json")}
    again = await http.post(f"/api/v1/test/{name}/amd64", files=files, headers=user)
    assert again.status_code == 201 and again.json() == {"created": [], "joined": run_ids}
    # The one-package form: the suite alone (debflow's reference run).
    single = await http.post(f"/api/v1/test/{name}/amd64/{trigger}-user0002", headers=user)
    assert single.status_code == 201 and len(single.json()["created"]) == 1

    listing = (await http.get("/api/v1/test?since=0", headers=user)).json()
    mine = {r["run_id"]: r for r in listing["results"]}
    assert set(run_ids) <= set(mine) and all(mine[i]["status"] is None for i in run_ids)
    assert mine[single.json()["created"][0]]["trigger"] == "migration-reference/0"
    other = (await http.get("/api/v1/test", headers={"Auth-Key": keys.other})).json()
    assert not set(run_ids) & {r["run_id"] for r in other["results"]}
    public = (await http.get("/api/v1/results.json?since=0")).json()
    assert set(run_ids) <= {r["run_id"] for r in public["results"]}

    one_line(await http.get(f"/api/v1/retry/{run_ids[0]}", headers=user), 400, "pending")
    one_line(
        await http.post(f"/api/v1/retry/{run_ids[0]}", headers={"Auth-Key": keys.other}), 403, "not yours"
    )
    one_line(await http.get("/api/v1/retry/999999999999", headers=user), 404, "no run 999999999999")
    # Once decided (as its batch records it), it can be retried, up to the hourly limit.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE debci_job SET status = 'fail', exit_code = 4 WHERE id = ANY(:ids)"), {"ids": run_ids}
        )
    assert api_context.settings.debci_retries_per_hour == RETRIES == len(run_ids)
    retried = [await http.post(f"/api/v1/retry/{i}", headers={"Auth-Key": keys.admin}) for i in run_ids]
    assert [r.status_code for r in retried] == [201, 201], [r.text for r in retried]
    assert not {r.json()["run_id"] for r in retried} & set(run_ids)
    # The requester's hourly retries are used up (an admin's retries count for the job's requester).
    before = job_rows(engine)
    limited = await http.get(f"/api/v1/retry/{run_ids[1]}", headers=user)
    one_line(limited, 429, "too many retries")
    assert int(limited.headers["retry-after"]) > 0
    assert job_rows(engine) == before
