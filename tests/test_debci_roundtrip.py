"""britney2's round trip over HTTP, with a client written from debci's documented API (httpx), against the
site and a worker with the host executor, on the examples: real autopkgtest runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from activities.services.api_keys import add_key
from support.site_server import serving
from tests.local_campaign import EXAMPLES, import_examples, import_second_suite, left_on_the_host
from web.app import create_app
from worker.context import Context
from worker.settings import Settings


class Britney:
    """What britney2 does through debci's API: submit, poll with `since`, retry."""

    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http = http
        self.headers = {"Auth-Key": key}
        self.since: int | None = None
        self.seen: dict[int, dict[str, Any]] = {}

    async def request(self, suite: str, arch: str, tests: list[dict[str, Any]]) -> dict[str, Any]:
        answer = await self.http.post(
            f"/api/v1/test/{suite}/{arch}", data={"tests": json.dumps(tests)}, headers=self.headers
        )
        assert answer.status_code == 201, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def poll(self) -> None:
        params = {"since": str(self.since)} if self.since is not None else {}
        answer = await self.http.get("/api/v1/test", params=params, headers=self.headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        for result in body["results"]:
            self.seen[result["run_id"]] = result  # a result may come again: the newest wins
        self.since = body["until"]

    async def until_final(self, run_ids: set[int]) -> dict[int, dict[str, Any]]:
        for _ in range(900):
            await self.poll()
            if run_ids <= set(self.seen) and all(self.seen[i]["status"] is not None for i in run_ids):
                return {i: self.seen[i] for i in run_ids}
            await asyncio.sleep(1)
        raise AssertionError(f"not final: {[self.seen.get(i) for i in run_ids]}")


@pytest.mark.slow
async def test_britney2_round_trip_with_real_runs(
    settings: Settings, worker: None, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    trees = [EXAMPLES / "hello-debflow", EXAMPLES / "greeter-debflow", EXAMPLES / "broken-debflow"]
    first = await import_examples(sessions, tmp_path, trees)
    second = await import_second_suite(sessions, tmp_path)
    britney_key, other_key = (
        add_key(sessions, f"britney-{first.suite}"),
        add_key(sessions, f"other-{first.suite}"),
    )
    context = Context(settings)
    try:
        with serving(create_app(context)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                britney, other = Britney(http, britney_key), Britney(http, other_key)
                passing = {"package": "hello-debflow", "trigger": "hello-debflow/1.0"}
                tests: list[dict[str, Any]] = [
                    passing,
                    {"package": "broken-debflow", "trigger": "broken-debflow/1.0"},
                    {
                        "package": "greeter-debflow",
                        "trigger": "hello-debflow/1.1",
                        "pin-packages": [["src:hello-debflow", second.suite]],
                    },
                    # Private: a baseline of its own (shared with no campaign), for this key only.
                    {"package": "hello-debflow", "trigger": "migration-reference/0", "is_private": True},
                ]
                made = await britney.request(first.suite, "amd64", tests)
                assert len(made["created"]) == 4 and made["joined"] == []
                # britney2 sends the passing request again while it is pending: it joins, nothing starts.
                again = await britney.request(first.suite, "amd64", [passing])
                assert again == {"created": [], "joined": [made["created"][0]]}

                results = await britney.until_final(set(made["created"]))
                ok, broken, pinned, private = (results[i] for i in made["created"])
                assert (ok["package"], ok["version"], ok["status"]) == ("hello-debflow", "1.0", "pass")
                assert (broken["package"], broken["status"]) == ("broken-debflow", "fail")
                # greeter-debflow tested with hello-debflow 1.1 from the second suite: its test fails.
                assert (pinned["package"], pinned["status"], pinned["trigger"]) == (
                    "greeter-debflow",
                    "fail",
                    "hello-debflow/1.1",
                )
                assert pinned["pin_packages"] == [["src:hello-debflow", second.suite]]
                assert (private["status"], private["is_private"]) == ("pass", True)

                # The private result is hidden from another key, in its list, the results file and logs.
                await other.poll()
                assert private["run_id"] not in other.seen
                public = (await http.get("/api/v1/results.json")).json()["results"]
                assert private["run_id"] not in [r["run_id"] for r in public]
                assert pinned["run_id"] in [r["run_id"] for r in public]
                log = f"/api/v1/logs/{private['run_id']}"
                assert (await http.get(log, headers=other.headers)).status_code == 403
                mine = await http.get(log, headers=britney.headers)
                assert mine.status_code == 200 and "hello-debflow" in mine.text

                # A retry of a decided run is a new run, reported like the others.
                retried = await http.get(f"/api/v1/retry/{ok['run_id']}", headers=britney.headers)
                assert retried.status_code == 201, retried.text
                new_id = retried.json()["run_id"]
                assert new_id not in made["created"]
                assert (await britney.until_final({new_id}))[new_id]["status"] == "pass"
    finally:
        context.close()
    assert left_on_the_host(["hello-debflow", "greeter-debflow", "broken-debflow"]) == []
