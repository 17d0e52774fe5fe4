"""The upload run's task bookkeeping: one TaskReport per (task, architecture), its attempts, what to retry.

Plain Python (no Temporal), so it is unit-tested on its own (tests/test_pipeline_tasks.py); the
UploadPipeline workflow owns one and tells it what its activities did.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.payloads import TaskAttempt, TaskReport, TaskResult, TaskStatus
from models.vocabulary import TaskName

TASK_NAMES = (TaskName.BUILD, TaskName.LINTIAN, TaskName.AUTOPKGTEST)
CHECKS = (TaskName.LINTIAN, TaskName.AUTOPKGTEST)  # what tests a build, so what a failed build skips
# Opt-in checks of a build (activities/qa/): a run has reports for the ones its submit named only.
QA_CHECKS = (TaskName.DEBDIFF, TaskName.BLHC, TaskName.PIUPARTS)


def task_key(name: str, architecture: str) -> str:
    return f"{name}/{architecture}"


def overall_result(tasks: list[TaskReport]) -> TaskResult:
    results = {t.result for t in tasks}
    if TaskResult.ERROR in results:
        return TaskResult.ERROR
    if TaskResult.FAILURE in results:
        return TaskResult.FAILURE
    return TaskResult.SUCCESS


@dataclass(frozen=True)
class RetryStep:
    """What a retry runs for one architecture: its build and everything after it, or some checks."""

    architecture: str
    first: bool  # the run's first architecture, which builds the arch:all packages
    rebuild: bool
    checks: tuple[str, ...] = ()


class PipelineTasks:
    """The reports of a run's tasks, in the order they were added."""

    def __init__(self) -> None:
        self.reports: dict[str, TaskReport] = {}

    def add(self, architectures: list[str], qa_checks: tuple[str, ...] = ()) -> None:
        """Every task of every architecture, pending (with the QA checks named)."""
        for arch in architectures:
            for name in (*TASK_NAMES, *(n for n in QA_CHECKS if n in qa_checks)):
                self.reports[task_key(name, arch)] = TaskReport(
                    name=name, architecture=arch, status=TaskStatus.PENDING
                )

    def carry(self, previous: list[TaskReport]) -> None:
        """The tasks of the run a retry re-runs, with their attempts: new attempts are added to them."""
        for task in previous:
            self.reports[task_key(task.name, task.architecture)] = task

    def all(self) -> list[TaskReport]:
        return list(self.reports.values())

    def get(self, name: str, architecture: str) -> TaskReport:
        return self.reports[task_key(name, architecture)]

    def failed(self) -> list[str]:
        """Keys of the tasks that failed or errored: what a retry re-runs."""
        bad = (TaskResult.FAILURE, TaskResult.ERROR)
        return [k for k, t in self.reports.items() if t.result in bad]

    def overall(self) -> TaskResult:
        return overall_result(self.all())

    def update(
        self,
        name: str,
        architecture: str,
        *,
        tries: int | None = None,
        reused: bool = False,
        **changes: object,
    ) -> TaskReport:
        """Change a task's report; a task reaching a final state also gets an entry in its attempts."""
        key = task_key(name, architecture)
        task = self.reports[key] = self.reports[key].model_copy(update=changes)
        if task.finished and "status" in changes:
            attempt = TaskAttempt(
                number=len(task.attempts) + 1,
                status=task.status,
                result=task.result,
                artifact_ids=task.artifact_ids,
                duration_s=task.duration_s,
                summary=task.summary,
                tries=tries,
                reused=reused,
            )
            task = self.reports[key] = task.model_copy(update={"attempts": [*task.attempts, attempt]})
        return task

    def start(self, name: str, architecture: str, *, summary: str, timeout_s: float) -> None:
        self.update(name, architecture, status=TaskStatus.RUNNING, summary=summary, timeout_s=timeout_s)

    def complete(
        self,
        name: str,
        architecture: str,
        *,
        result: TaskResult,
        artifact_ids: list[int],
        duration_s: float,
        summary: str,
        tries: int | None,
        reused: bool,
    ) -> None:
        self.update(
            name,
            architecture,
            status=TaskStatus.COMPLETED,
            result=result,
            artifact_ids=artifact_ids,
            duration_s=duration_s,
            summary=summary,
            tries=tries,
            reused=reused,
        )

    def error(self, name: str, architecture: str, *, message: str, tries: int | None) -> None:
        self.update(
            name, architecture, status=TaskStatus.ERROR, result=TaskResult.ERROR, summary=message, tries=tries
        )

    def skip(self, architecture: str, names: tuple[str, ...], reason: str) -> None:
        for name in names:
            if task_key(name, architecture) not in self.reports:
                continue  # a QA check this run was not asked for
            task = self.get(name, architecture)
            if task.status == TaskStatus.SKIPPED and task.summary == reason:
                continue  # skipped again for the same reason in a retry: not a new attempt
            self.update(
                name, architecture, status=TaskStatus.SKIPPED, result=TaskResult.SKIPPED, summary=reason
            )

    def details(self) -> str:
        """The run's current details (Temporal Web UI): what runs, and how far the run is."""
        tasks = self.all()
        running = [f"- running: {t.summary}" for t in tasks if t.status == TaskStatus.RUNNING]
        done = sum(t.finished for t in tasks)
        return "\n".join([*running, f"- {done} of {len(tasks)} tasks finished"])

    def retry_plan(self, architectures: list[str], built: set[str]) -> list[RetryStep]:
        """Per architecture: a failed build re-runs with everything after it; else its failed checks,
        on its last successful build (`built`) — or, when that build is not known (the report of a run
        older than reports that carry builds), on a new build."""
        failed = set(self.failed())
        steps = []
        for index, arch in enumerate(architectures):
            first = index == 0
            if task_key("build", arch) in failed:
                steps.append(RetryStep(arch, first, rebuild=True))
                continue
            checks = tuple(n for n in (*CHECKS, *QA_CHECKS) if task_key(n, arch) in failed)
            if checks:
                steps.append(RetryStep(arch, first, rebuild=arch not in built, checks=checks))
        return steps
