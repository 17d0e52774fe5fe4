"""The HTML pages: the same loaders as the JSON API, rendered by autoescaping Jinja2 templates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from models.campaign import Verdict
from web import api, ids
from web.chart import daily_chart
from web.dependencies import context
from web.files import file_response, find_file
from web.queries_packages import trigger_of

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _when(moment: dt.datetime | None) -> str:
    return "" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["duration"] = _duration
templates.env.filters["when"] = _when
templates.env.filters["q"] = lambda text: quote(str(text), safe="")
templates.env.filters["qpath"] = lambda text: quote(str(text), safe="/")
templates.env.globals["trigger_of"] = trigger_of
templates.env.globals["chart"] = daily_chart
templates.env.globals["verdicts"] = [str(v) for v in Verdict]


def render(request: Request, name: str, **values: Any) -> HTMLResponse:
    values["now"] = dt.datetime.now(dt.UTC)
    return templates.TemplateResponse(request, name, values)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    return render(request, "home.html", home=await api.load_home(request))


@router.get("/packages/{source}", response_class=HTMLResponse)
async def package(request: Request, source: str) -> HTMLResponse:
    return render(request, "package.html", page=await api.load_package(request, source))


@router.get("/packages/{source}/{suite}/{arch}", response_class=HTMLResponse)
async def history(
    request: Request, source: str, suite: str, arch: str, before: api.Before = None
) -> HTMLResponse:
    page = await api.load_history(request, source, suite, arch, before)
    return render(request, "history.html", page=page, first=before is None)


@router.get("/runs/{workflow_id}", response_class=HTMLResponse)
async def run(request: Request, workflow_id: str) -> HTMLResponse:
    return render(request, "run.html", run=await api.load_run(request, workflow_id))


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign(
    request: Request, campaign_id: str, verdict: api.VerdictFilter = None, page: api.Page = 1
) -> HTMLResponse:
    return render(
        request, "campaign.html", campaign=await api.load_campaign(request, campaign_id, verdict, page)
    )


@router.get("/status", response_class=HTMLResponse)
async def status(request: Request) -> HTMLResponse:
    return render(request, "status.html", status=await api.load_status(request))


async def _file(request: Request, artifact_id: str, path: str | None) -> Response:
    number = ids.artifact_id(artifact_id)
    wanted = None if path is None else ids.file_path(path)
    ctx = context(request)

    def respond() -> Response:  # one thread hop: the lookup, and the reading of a small file
        with ctx.sessions() as db:
            blob, size, name = find_file(db, ctx.store, number, wanted)
        return file_response(request, blob, size, name)

    return await run_in_threadpool(respond)


@router.get("/artifacts/{artifact_id}/log")
async def log(request: Request, artifact_id: str) -> Response:
    """An artifact's log as text/plain (build log, lintian output, autopkgtest log)."""
    return await _file(request, artifact_id, None)


@router.get("/artifacts/{artifact_id}/files/{path:path}")
async def artifact_file(request: Request, artifact_id: str, path: str) -> Response:
    return await _file(request, artifact_id, path)
