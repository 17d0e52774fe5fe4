"""Start-to-close timeouts from task history: a bound from the p95 duration of a task for a package.

    timeout = min(ceiling, max(floor, factor * p95))   when the key has at least `min_samples` runs
    timeout = ceiling                                  otherwise

per (task, package, suite/architecture): `ceiling` is the configured timeout of the task type
(DEBFLOW_BUILD_TIMEOUT_S, … of the worker that runs this activity; runs recorded before that sent their
own), `floor` DEBFLOW_TIMEOUT_FLOOR_S, `factor` DEBFLOW_TIMEOUT_HISTORY_FACTOR. Only runs that reached
a verdict count (success, failure): an error may have been cut short by a timeout.

A build or test may first have to make its environment (or wait while another activity makes it). That
time is recorded apart (`environment` rows per suite/architecture, activities/tools/environments.py), never in
the task's own duration; a history-derived timeout of a build or test gets the p95 of it added once, not
multiplied by `factor`, up to the ceiling.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import Text
from temporalio import activity

from activities.tools import environments
from models.payloads import EstimateTimeoutsInput, TaskTimeouts, TimeoutEstimates
from models.vocabulary import ActivityName

TASKS = ("build", "lintian", "autopkgtest", "debdiff", "blhc", "piuparts")
NEEDS_ENVIRONMENT = ("build", "autopkgtest", "piuparts")

# One statement for every (task, architecture) of the upload, along ix_task_history_key_started; the
# retention policy keeps at most keep + 2 rows per key, so each group is small.
DURATIONS = text(
    """
    SELECT task_name, context, count(*) AS samples,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95
    FROM task_history
    WHERE task_name = ANY(:tasks) AND subject = :subject AND context = ANY(:contexts)
      AND result IN ('success', 'failure')
    GROUP BY task_name, context
    """
).bindparams(bindparam("tasks", type_=ARRAY(Text)), bindparam("contexts", type_=ARRAY(Text)))


# Making an environment, per suite/architecture: one row per making or waiting, whatever the package.
ENVIRONMENT_DURATIONS = text(
    """
    SELECT context, count(*) AS samples,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95
    FROM task_history
    WHERE task_name = :task AND subject = :subject AND context = ANY(:contexts)
    GROUP BY context
    """
).bindparams(bindparam("contexts", type_=ARRAY(Text)))


def ceiling(defaults: TaskTimeouts, task: str) -> float:
    return {
        "build": defaults.build_s,
        "lintian": defaults.lintian_s,
        "autopkgtest": defaults.autopkgtest_s,
        # The QA checks (activities/qa/) take the ceilings of their kind.
        "debdiff": defaults.lintian_s,
        "blhc": defaults.lintian_s,
        "piuparts": defaults.autopkgtest_s,
    }[task]


def bound(
    p95: float, samples: int, ceiling_s: float, *, floor_s: float, factor: float, min_samples: int
) -> tuple[float, str]:
    """The timeout for one key and a one-line reason."""
    if samples < min_samples:
        return ceiling_s, f"configured {ceiling_s:g} s ({samples} of {min_samples} runs in history)"
    value = min(ceiling_s, max(floor_s, factor * p95))
    return value, (
        f"{factor:g} x p95 {p95:.0f} s of {samples} runs, in [{floor_s:g}, {ceiling_s:g}] s: {value:.0f} s"
    )


class TimeoutEstimator:
    """The `estimate_timeouts` activity over the task history table."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        floor_s: float,
        factor: float,
        min_samples: int,
        policy: TaskTimeouts | None = None,
    ) -> None:
        self.sessions = sessions
        # This worker's timeouts (its settings): the ceilings, heartbeat and queue wait of the runs
        # that ask (timeouts are the workers' policy, not the submitting host's).
        self.policy = policy or TaskTimeouts()
        self.floor_s = floor_s
        self.factor = factor
        self.min_samples = min_samples

    @activity.defn(name=ActivityName.ESTIMATE_TIMEOUTS)
    def estimate_timeouts(self, params: EstimateTimeoutsInput) -> TimeoutEstimates:
        contexts = {f"{params.suite}/{arch}": arch for arch in params.architectures}
        with self.sessions() as session:
            rows = session.execute(
                DURATIONS, {"tasks": list(TASKS), "subject": params.source, "contexts": list(contexts)}
            ).all()
            making = session.execute(
                ENVIRONMENT_DURATIONS,
                {"task": environments.TASK, "subject": environments.SUBJECT, "contexts": list(contexts)},
            ).all()
        history = {(task, contexts[context]): (int(n), float(p95)) for task, context, n, p95 in rows}
        environment = {contexts[context]: (int(n), float(p95)) for context, n, p95 in making}
        defaults = params.defaults or self.policy
        result = TimeoutEstimates(policy=None if params.defaults else self.policy)
        for arch in params.architectures:
            for task in TASKS:
                samples, p95 = history.get((task, arch), (0, 0.0))
                value, basis = bound(
                    p95,
                    samples,
                    ceiling(defaults, task),
                    floor_s=self.floor_s,
                    factor=self.factor,
                    min_samples=self.min_samples,
                )
                top = ceiling(defaults, task)
                if task in NEEDS_ENVIRONMENT and arch in environment and value < top:
                    made, seconds = environment[arch]
                    value = min(top, value + seconds)
                    basis += f", + p95 {seconds:.0f} s of {made} environment makings: {value:.0f} s"
                result.timeouts[f"{task}/{arch}"] = value
                result.basis[f"{task}/{arch}"] = basis
        return result
