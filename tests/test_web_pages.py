"""The results site over HTTP: the real application, PostgreSQL and Temporal dev server; results stored
the way the activities store them (support/site_data.py)."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from activities.storage.store import ArtifactStore
from models.campaign import RunResult, Verdict
from support.site_data import Run, Target, store_campaign, store_runs, store_upload
from support.site_server import serving
from tests.conftest import row_counts
from web.app import STATEMENT_HEADER, create_app
from web.files import SMALL
from web.queries_runs import page_groups
from worker.context import Context
from worker.settings import Settings

XSS = "<script>alert(1)</script>"
MAX_STATEMENTS = 10


@dataclass
class Seeded:
    suite: str
    source: str
    xss_source: str
    upload_id: str
    campaign_id: str
    upload_ids: dict[str, int]
    regression_new_log: int
    regression_reference_log: int


@pytest.fixture
def seeded(store: ArtifactStore, sessions: sessionmaker[Session], tmp_path: Path) -> Seeded:
    tag = uuid.uuid4().hex[:8]
    suite, source, xss_source = f"site-{tag}", f"greeter-{tag}", f"xss-{tag}"
    upload_id = f"upload-{source}_1.1-{tag}"
    campaign_id = f"campaign-hello_1.1-{tag}"
    upload_ids = store_upload(
        store,
        sessions,
        workflow_id=upload_id,
        run=Run(source, "1.1", suite, "amd64", 0, "Howdy from debflow 1.1\n", {"greets": "PASS"}),
        scratch=tmp_path,
    )
    verdicts = store_campaign(
        store,
        sessions,
        campaign_id=campaign_id,
        suite=suite,
        architecture="amd64",
        targets=[
            Target(f"plain-{tag}", "1.0", RunResult.PASS, RunResult.PASS),
            Target(
                source,
                "1.0",
                RunResult.FAIL,
                RunResult.PASS,
                new_tests={"relays-greeting": "FAIL"},
                reference_tests={"relays-greeting": "PASS"},
                new_log="expected Hello, got: Howdy from debflow 1.1\n",
                reference_log="Hello from debflow 1.0\n",
                attempts=2,
            ),
            Target(
                xss_source,
                "1.0",
                RunResult.FAIL,
                RunResult.PASS,
                new_tests={XSS: "FAIL"},
                reference_tests={XSS: "PASS"},
                new_log=f"{XSS}\n",
            ),
        ],
    )
    regression = next(v for v in verdicts if v.source == source)
    assert regression.verdict is Verdict.REGRESSION and regression.new_log_artifact_id
    return Seeded(
        suite,
        source,
        xss_source,
        upload_id,
        campaign_id,
        upload_ids,
        regression.new_log_artifact_id,
        regression.reference_log_artifact_id or 0,
    )


@pytest.fixture
def site_context(settings: Settings) -> Iterator[Context]:
    context = Context(settings, pool_size=4)
    yield context
    context.close()


@pytest.fixture
async def site(site_context: Context) -> AsyncIterator[httpx.AsyncClient]:
    with serving(create_app(site_context, live_ttl_s=0.5)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http


async def get_ok(http: httpx.AsyncClient, path: str) -> httpx.Response:
    response = await http.get(path)
    assert response.status_code == 200, (path, response.text)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert int(response.headers[STATEMENT_HEADER]) <= MAX_STATEMENTS, path
    return response


async def test_pages_and_json_show_the_stored_results(
    site: httpx.AsyncClient, seeded: Seeded, engine: Engine, settings: Settings
) -> None:
    before = row_counts(engine)
    s = seeded
    home = (await get_ok(site, "/")).text
    assert s.campaign_id in home and s.source in home  # a confirmed regression, with its campaign
    package = (await get_ok(site, f"/packages/{s.source}")).text
    assert "autopkgtest" in package and f"/packages/{s.source}/{s.suite}/amd64" in package
    assert f"/artifacts/{s.upload_ids['build']}/log" in package
    history = (await get_ok(site, f"/packages/{s.source}/{s.suite}/amd64")).text
    assert s.upload_id in history and s.campaign_id in history and "relays-greeting" in history
    run = (await get_ok(site, f"/runs/{s.upload_id}")).text
    assert "initial-upload-closes-no-bugs" in run and "warning (1)" in run and "greets" in run

    campaign = (await get_ok(site, f"/campaigns/{s.campaign_id}")).text
    # REGRESSION rows first, each with the new and the baseline log, the re-run that confirmed it.
    assert campaign.index("row-REGRESSION") < campaign.index("row-PASS")
    assert f"/artifacts/{s.regression_new_log}/log" in campaign
    assert f"/artifacts/{s.regression_reference_log}/log" in campaign
    assert "confirmed by a re-run" in campaign and "relays-greeting" in campaign
    only = (await get_ok(site, f"/campaigns/{s.campaign_id}?verdict=PASS")).text
    assert "row-PASS" in only and "row-REGRESSION" not in only

    status = (await get_ok(site, "/status")).text
    assert "<svg" in status and f"{s.suite} / amd64" in status
    assert "Temporal cannot be read" not in status and settings.task_queue in status  # the live view

    api = (await get_ok(site, f"/api/campaigns/{s.campaign_id}")).json()
    assert api["page"]["counts"] == {"REGRESSION": 2, "PASS": 1}
    assert [r["verdict"] for r in api["page"]["rows"]][:2] == ["REGRESSION", "REGRESSION"]
    assert (await get_ok(site, f"/api/packages/{s.source}")).json()["matrix"][0]["suite"] == s.suite
    assert (await get_ok(site, "/api/status")).json()["data"]["charts"]
    assert (await get_ok(site, "/api/home")).json()["data"]["regressions"]
    latest = (await get_ok(site, f"/api/packages/{s.source}/{s.suite}/amd64/latest.json")).json()
    assert latest["package"] == s.source and latest["suite"] == s.suite and latest["arch"] == "amd64"
    assert latest["status"] in ("pass", "fail") and {"run_id", "version", "date", "previous_status"} <= set(
        latest
    )
    history_json = (await get_ok(site, f"/api/packages/{s.source}/{s.suite}/amd64/history.json")).json()
    assert len(history_json) == 3 and history_json[0] == latest
    schema = (await get_ok(site, "/api/openapi.json")).json()
    assert "/api/campaigns/{campaign_id}" in schema["paths"]
    assert row_counts(engine) == before, "a page view changed the database"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/packages/Not_A_Name", 400),
        ("/packages/nosuch-package-xyz", 404),
        ("/packages/a%2F..%2Fetc", 400),
        ("/packages/nosuch-package-xyz/bookworm/amd64", 404),
        ("/packages/hello/bookworm/amd64?before=abc", 400),
        ("/artifacts/abc/log", 400),
        ("/artifacts/999999999/log", 404),
        ("/artifacts/1/files/..%2F..%2Fetc%2Fpasswd", 400),
        ("/campaigns/no%20such", 400),
        ("/campaigns/campaign-nosuch_1-0", 404),
        ("/campaigns/campaign-nosuch_1-0?verdict=<b>", 400),
        ("/runs/upload-nosuch_1-0", 404),
        ("/no/such/page", 404),
    ],
)
async def test_bad_and_unknown_ids_get_one_clear_line(
    site: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await site.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in response.text


async def test_the_site_is_read_only(site: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = await site.request(method, "/")
        assert response.status_code == 405 and response.text.startswith("error: ")


async def test_package_controlled_text_is_shown_as_text(site: httpx.AsyncClient, seeded: Seeded) -> None:
    for path in (
        f"/campaigns/{seeded.campaign_id}",
        f"/packages/{seeded.xss_source}/{seeded.suite}/amd64",
    ):
        page = (await get_ok(site, path)).text
        assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    api = (await get_ok(site, f"/api/campaigns/{seeded.campaign_id}?verdict=REGRESSION")).json()
    assert any(XSS in r["regressed_tests"] for r in api["page"]["rows"])


async def test_logs_are_plain_text_with_ranges_and_gzip(site: httpx.AsyncClient, seeded: Seeded) -> None:
    path = f"/artifacts/{seeded.regression_reference_log}/log"
    whole = await get_ok(site, path)
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    assert whole.text == "Hello from debflow 1.0\n"
    assert whole.headers["accept-ranges"] == "bytes"

    raw = await site.get(path, headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip" and raw.text == whole.text  # httpx decodes it
    async with site.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as streamed:
        body = b"".join([chunk async for chunk in streamed.aiter_raw()])
    assert gzip.decompress(body).decode() == whole.text

    part = await site.get(path, headers={"Range": "bytes=0-4"})
    assert part.status_code == 206 and part.text == "Hello"
    assert part.headers["content-range"] == f"bytes 0-4/{len(whole.content)}"
    tail = await site.get(path, headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.text == "1.0\n"
    outside = await site.get(path, headers={"Range": "bytes=9999-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(whole.content)}"
    malformed = await site.get(path, headers={"Range": "lines=1-2"})
    assert malformed.status_code == 400 and malformed.text.startswith("error: ")

    xss_log = (await get_ok(site, f"/api/campaigns/{seeded.campaign_id}?verdict=REGRESSION")).json()
    log_ids = [r["new_log_artifact_id"] for r in xss_log["page"]["rows"] if r["source"] == seeded.xss_source]
    served = await get_ok(site, f"/artifacts/{log_ids[0]}/log")
    assert served.headers["content-type"] == "text/plain; charset=utf-8" and XSS in served.text
    files = await get_ok(site, f"/artifacts/{seeded.upload_ids['lintian']}/files/lintian.txt")
    assert "initial-upload-closes-no-bugs" in files.text
    missing = await site.get(f"/artifacts/{seeded.upload_ids['lintian']}/files/other.txt")
    assert missing.status_code == 404


@pytest.mark.slow
def test_the_dev_stack_serves_the_site(tmp_path: Path) -> None:
    """What `debflow dev` starts beside Temporal and PostgreSQL: `debflow serve` finding the stack."""
    import shutil
    import time

    from client.serve_commands import start_site_process
    from support.site_server import free_port
    from worker.devstack import DevStack, private_settings
    from worker.postgres import world_readable_tempdir

    state = world_readable_tempdir("debflow-test-site-dev-")
    settings = private_settings(state)
    stack = DevStack(settings, workers=0, say=lambda _: None)
    try:
        stack.start()
        started = start_site_process(settings, free_port())
        assert started is not None
        process, url = started
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    response = httpx.get(url + "status", timeout=10)
                    break
                except httpx.TransportError:
                    assert process.poll() is None and time.monotonic() < deadline, "the site did not start"
                    time.sleep(0.5)
            assert response.status_code == 200 and "Pending work per queue" in response.text
            assert "Temporal cannot be read" not in response.text  # it found the stack's Temporal
            assert settings.task_queue in response.text
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_a_campaign_page_spans_the_verdict_groups_in_display_order() -> None:
    counts = {"REGRESSION": 3, "ALWAYSFAIL": 150, "PASS": 400}
    assert page_groups(counts, None, 1) == [("REGRESSION", 3, 0), ("ALWAYSFAIL", 97, 0)]
    assert page_groups(counts, None, 2) == [("ALWAYSFAIL", 53, 97), ("PASS", 47, 0)]
    assert page_groups(counts, None, 6) == [("PASS", 53, 347)]
    assert page_groups(counts, None, 7) == []
    assert page_groups(counts, "PASS", 4) == [("PASS", 100, 300)]
    assert page_groups(counts, "FLAKY", 1) == []


async def test_campaign_pages_list_every_target_once_regressions_first(
    site: httpx.AsyncClient, store: ArtifactStore, sessions: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:8]
    campaign_id = f"campaign-many_1-{tag}"
    kinds = [
        (RunResult.FAIL, RunResult.PASS),
        (RunResult.FAIL, RunResult.FAIL),
    ] + [(RunResult.PASS, RunResult.PASS)] * 3
    targets = [Target(f"t{i:03d}-{tag}", "1.0", *kinds[i % 5]) for i in range(230)]
    store_campaign(
        store, sessions, campaign_id=campaign_id, suite=f"many-{tag}", architecture="amd64", targets=targets
    )
    listed = []
    for page in (1, 2, 3):
        found = (await get_ok(site, f"/api/campaigns/{campaign_id}?page={page}")).json()["page"]
        assert found["pages"] == 3
        listed += [(r["verdict"], r["source"]) for r in found["rows"]]
    order = ["REGRESSION", "ALWAYSFAIL", "PASS"]
    assert listed == sorted(listed, key=lambda r: (order.index(r[0]), r[1]))
    assert sorted(s for _, s in listed) == sorted(t.source for t in targets)
    passed = sorted(s for v, s in listed if v == "PASS")
    assert len(passed) > 100
    second = (await get_ok(site, f"/api/campaigns/{campaign_id}?verdict=PASS&page=2")).json()["page"]
    assert [r["source"] for r in second["rows"]] == passed[100:200]


async def test_a_large_log_is_streamed_whole_in_ranges_and_gzipped(
    site: httpx.AsyncClient, store: ArtifactStore, tmp_path: Path
) -> None:
    text = "".join(f"line {i} of a long autopkgtest log\n" for i in range(40_000))  # ≈ 1.3 MB, > SMALL
    assert len(text) > SMALL
    (artifact_id,) = store_runs(
        store,
        [Run(f"big-{uuid.uuid4().hex[:8]}", "1.0", "big", "amd64", 0, text)],
        workflow_id=f"upload-big_1.0-{uuid.uuid4().hex[:8]}",
        scratch=tmp_path,
    )
    path = f"/artifacts/{artifact_id}/log"
    plain = await site.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and plain.text == text
    assert plain.headers["content-length"] == str(len(text))
    zipped = await site.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.text == text
    assert "content-length" not in zipped.headers  # streamed as it is compressed
    tail = await site.get(path, headers={"Range": f"bytes={len(text) - 30}-"})
    assert tail.status_code == 206 and tail.text == text[-30:]


def test_serve_without_a_database_says_so_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEBFLOW_", "TEMPORAL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "client", "serve", "--port", "1"],
        env={**env, "DEBFLOW_STATE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: no database: set DEBFLOW_DATABASE_URL or run `debflow dev`"]
