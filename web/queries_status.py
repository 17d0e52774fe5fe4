"""The home and status pages' reads from PostgreSQL: recent results, confirmed regressions, daily counts
per suite and architecture, slow tests, results that differ between architectures, infrastructure errors."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from models.vocabulary import ItemCategory, TaskName
from web.files import public_artifact

CHART_DAYS = 14

_RECENT = text(
    f"""
    SELECT id, category, created_at, workflow_id, data ->> 'source', data ->> 'version',
           data ->> 'architecture', data ->> 'result'
    FROM artifact
    WHERE category IN ('debian:autopkgtest', 'debian:package-build-log', 'debian:lintian')
      AND {public_artifact("artifact")}
    ORDER BY id DESC LIMIT 20
    """
)
_REGRESSIONS = text(
    f"""
    SELECT ci.created_at, c.name, ci.data
    FROM collection_item ci JOIN collection c ON c.id = ci.collection_id
    WHERE ci.category = '{ItemCategory.QA_RESULT}' AND ci.data ->> 'campaign' IS NOT NULL
      AND ci.data ->> 'verdict' = 'REGRESSION'
    ORDER BY ci.id DESC LIMIT 20
    """
)
_DAILY = text(
    f"""
    SELECT date_trunc('day', created_at AT TIME ZONE 'UTC')::date, data ->> 'suite', data ->> 'architecture',
           data ->> 'result', count(*)
    FROM artifact
    WHERE category = 'debian:autopkgtest' AND created_at > now() - make_interval(days => :days)
      AND {public_artifact("artifact")}
    GROUP BY 1, 2, 3, 4
    """
)
_SLOW = text(
    """
    SELECT subject, context, duration_s, started_at, workflow_id FROM task_history
    WHERE task_name IN (:real, :simulated) AND started_at > now() - interval '7 days'
    ORDER BY duration_s DESC LIMIT 10
    """
).bindparams(real=TaskName.AUTOPKGTEST.value, simulated=TaskName.SIMULATED_AUTOPKGTEST.value)
# The latest result of each package on each architecture of a suite; those whose results differ.
_ARCH_DIFF = text(
    f"""
    WITH latest AS (
        SELECT DISTINCT ON (data ->> 'source', data ->> 'suite', data ->> 'architecture')
               data ->> 'source' AS source, data ->> 'suite' AS suite, data ->> 'architecture' AS arch,
               data ->> 'result' AS result
        FROM artifact
        WHERE category = 'debian:autopkgtest' AND created_at > now() - make_interval(days => :days)
          AND {public_artifact("artifact")}
        ORDER BY data ->> 'source', data ->> 'suite', data ->> 'architecture', id DESC
    )
    SELECT source, suite, jsonb_object_agg(arch, result) FROM latest
    GROUP BY source, suite HAVING count(DISTINCT result) > 1
    ORDER BY source, suite LIMIT 50
    """
)
# Tasks only: making or waiting for an environment times work, it is not work.
_ERRORS = text(
    """
    SELECT count(*) FILTER (WHERE started_at > now() - interval '1 day'),
           count(*) FILTER (WHERE started_at > now() - interval '1 day' AND result = 'error'),
           count(*), count(*) FILTER (WHERE result = 'error')
    FROM task_history WHERE started_at > now() - interval '7 days' AND task_name <> :environment
    """
).bindparams(environment=TaskName.ENVIRONMENT.value)


class RecentResult(BaseModel):
    artifact_id: int
    category: str
    date: dt.datetime
    workflow_id: str | None
    source: str
    version: str
    architecture: str
    result: str


class Regression(BaseModel):
    date: dt.datetime
    campaign_id: str
    suite: str
    source: str
    architecture: str
    regressed_tests: list[str]
    new_log_artifact_id: int | None
    reference_log_artifact_id: int | None


class HomeData(BaseModel):
    recent: list[RecentResult]
    regressions: list[Regression]


def home_data(db: Session) -> HomeData:
    recent = [
        RecentResult(**dict(zip(RecentResult.model_fields, row, strict=True))) for row in db.execute(_RECENT)
    ]
    regressions = [
        Regression(
            date=created,
            campaign_id=str(data.get("campaign")),
            suite=suite,
            source=str(data.get("source") or data.get("package") or ""),
            architecture=str(data.get("architecture", "")),
            regressed_tests=[str(t) for t in data.get("regressed_tests") or []],
            new_log_artifact_id=data.get("new_log_artifact_id"),
            reference_log_artifact_id=data.get("reference_log_artifact_id"),
        )
        for created, suite, data in db.execute(_REGRESSIONS)
    ]
    return HomeData(recent=recent, regressions=regressions)


class DayCounts(BaseModel):
    day: dt.date
    counts: dict[str, int] = Field(default_factory=dict)  # pass, fail, neutral, tmpfail

    @property
    def pass_rate(self) -> float | None:
        decided = self.counts.get("pass", 0) + self.counts.get("fail", 0)
        return self.counts.get("pass", 0) / decided if decided else None


class SuiteChart(BaseModel):
    suite: str
    architecture: str
    days: list[DayCounts]


class SlowTest(BaseModel):
    source: str
    context: str
    duration_s: float
    started_at: dt.datetime
    workflow_id: str | None


class ArchDifference(BaseModel):
    source: str
    suite: str
    results: dict[str, str]  # architecture → latest result


class ErrorRate(BaseModel):
    tasks_day: int
    errors_day: int
    tasks_week: int
    errors_week: int

    @property
    def rate_day(self) -> float:
        return self.errors_day / self.tasks_day if self.tasks_day else 0.0

    @property
    def rate_week(self) -> float:
        return self.errors_week / self.tasks_week if self.tasks_week else 0.0


class StatusData(BaseModel):
    computed_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    charts: list[SuiteChart]
    slow: list[SlowTest]
    differing: list[ArchDifference]
    errors: ErrorRate


STATUS_WORDS = {"success": "pass", "failure": "fail", "skipped": "neutral", "error": "tmpfail"}


def status_data(db: Session, *, today: dt.date | None = None) -> StatusData:
    today = today or dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    charts: dict[tuple[str, str], dict[dt.date, DayCounts]] = {}
    for day, suite, arch, result, count in db.execute(_DAILY, {"days": CHART_DAYS}):
        series = charts.setdefault((suite or "?", arch or "?"), {d: DayCounts(day=d) for d in days})
        if day in series:
            word = STATUS_WORDS.get(result or "", "fail")
            series[day].counts[word] = series[day].counts.get(word, 0) + int(count)
    slow = [
        SlowTest(source=s, context=c, duration_s=d, started_at=at, workflow_id=w)
        for s, c, d, at, w in db.execute(_SLOW)
    ]
    differing = [
        ArchDifference(source=s, suite=suite, results=dict(results))
        for s, suite, results in db.execute(_ARCH_DIFF, {"days": CHART_DAYS})
    ]
    tasks_day, errors_day, tasks_week, errors_week = db.execute(_ERRORS).one()
    return StatusData(
        charts=[
            SuiteChart(suite=s, architecture=a, days=list(series.values()))
            for (s, a), series in sorted(charts.items())
        ],
        slow=slow,
        differing=differing,
        errors=ErrorRate(
            tasks_day=tasks_day, errors_day=errors_day, tasks_week=tasks_week, errors_week=errors_week
        ),
    )
