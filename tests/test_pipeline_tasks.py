"""The upload run's task bookkeeping and the one `builds_on` rule, without Temporal."""

from __future__ import annotations

from models.architectures import builds_on, recorded_wildcard_matches
from models.payloads import TaskResult, TaskStatus, UploadPipelineInput, UploadReport
from workflows.pipeline_tasks import PipelineTasks, RetryStep, overall_result


def _run(architectures: list[str]) -> PipelineTasks:
    tasks = PipelineTasks()
    tasks.add(architectures)
    return tasks


def _complete(tasks: PipelineTasks, name: str, arch: str, result: TaskResult, artifact: int = 1) -> None:
    tasks.start(name, arch, summary=f"{name} {arch}", timeout_s=60)
    tasks.complete(
        name,
        arch,
        result=result,
        artifact_ids=[artifact],
        duration_s=2.0,
        summary=f"{name} {result}",
        tries=1,
        reused=False,
    )


def test_every_task_starts_pending_and_a_final_state_is_an_attempt() -> None:
    tasks = _run(["amd64", "arm64"])
    assert [(t.name, t.architecture, t.status) for t in tasks.all()][:3] == [
        ("build", "amd64", TaskStatus.PENDING),
        ("lintian", "amd64", TaskStatus.PENDING),
        ("autopkgtest", "amd64", TaskStatus.PENDING),
    ]
    assert len(tasks.all()) == 6
    tasks.start("build", "amd64", summary="build hello 1.0 amd64", timeout_s=600)
    assert tasks.get("build", "amd64").attempts == []  # running: no attempt yet
    assert tasks.details() == "- running: build hello 1.0 amd64\n- 0 of 6 tasks finished"
    _complete(tasks, "build", "amd64", TaskResult.SUCCESS, artifact=7)
    build = tasks.get("build", "amd64")
    assert build.status == TaskStatus.COMPLETED and build.timeout_s == 60
    assert [(a.number, a.result, a.artifact_ids, a.tries) for a in build.attempts] == [
        (1, TaskResult.SUCCESS, [7], 1)
    ]
    tasks.error("build", "arm64", message="no worker", tries=None)
    assert tasks.get("build", "arm64").result == TaskResult.ERROR
    assert tasks.details() == "- 2 of 6 tasks finished"


def test_a_skip_for_the_same_reason_is_not_a_new_attempt() -> None:
    tasks = _run(["amd64"])
    tasks.skip("amd64", ("lintian", "autopkgtest"), "build failed")
    tasks.skip("amd64", ("lintian",), "build failed")
    assert len(tasks.get("lintian", "amd64").attempts) == 1
    tasks.skip("amd64", ("lintian",), "build errored")
    assert [a.summary for a in tasks.get("lintian", "amd64").attempts] == ["build failed", "build errored"]


def test_the_overall_result_is_the_worst_task() -> None:
    tasks = _run(["amd64"])
    assert tasks.overall() == TaskResult.SUCCESS  # nothing failed (yet)
    _complete(tasks, "build", "amd64", TaskResult.SUCCESS)
    _complete(tasks, "lintian", "amd64", TaskResult.FAILURE)
    assert tasks.overall() == TaskResult.FAILURE
    tasks.error("autopkgtest", "amd64", message="testbed", tries=3)
    assert tasks.overall() == TaskResult.ERROR == overall_result(tasks.all())
    assert tasks.failed() == ["lintian/amd64", "autopkgtest/amd64"]


def test_a_retry_reruns_a_failed_build_whole_and_else_only_the_failed_checks() -> None:
    tasks = _run(["amd64", "arm64", "i386"])
    _complete(tasks, "build", "amd64", TaskResult.SUCCESS)
    _complete(tasks, "lintian", "amd64", TaskResult.SUCCESS)
    _complete(tasks, "autopkgtest", "amd64", TaskResult.FAILURE)
    tasks.error("build", "arm64", message="no worker", tries=None)
    tasks.skip("arm64", ("lintian", "autopkgtest"), "build errored")
    for name in ("build", "lintian", "autopkgtest"):
        _complete(tasks, name, "i386", TaskResult.SUCCESS)
    plan = tasks.retry_plan(["amd64", "arm64", "i386"], built={"amd64", "i386"})
    assert plan == [
        RetryStep("amd64", first=True, rebuild=False, checks=("autopkgtest",)),
        RetryStep("arm64", first=False, rebuild=True),
    ]
    # A report that carries no builds (from a run older than that): the check runs on a new build.
    assert tasks.retry_plan(["amd64", "arm64", "i386"], built=set())[0] == RetryStep(
        "amd64", first=True, rebuild=True, checks=("autopkgtest",)
    )


def test_a_retry_carries_the_previous_attempts_forward() -> None:
    before = _run(["amd64"])
    _complete(before, "build", "amd64", TaskResult.SUCCESS)
    _complete(before, "autopkgtest", "amd64", TaskResult.FAILURE, artifact=3)
    retry = PipelineTasks()
    retry.carry(before.all())
    _complete(retry, "autopkgtest", "amd64", TaskResult.SUCCESS, artifact=4)
    test = retry.get("autopkgtest", "amd64")
    assert [(a.number, a.result, a.artifact_ids) for a in test.attempts] == [
        (1, TaskResult.FAILURE, [3]),
        (2, TaskResult.SUCCESS, [4]),
    ]
    assert len(retry.get("build", "amd64").attempts) == 1
    assert len(before.get("autopkgtest", "amd64").attempts) == 1  # the previous report is not changed


def test_inputs_and_reports_of_earlier_runs_load_under_their_old_names() -> None:
    old = UploadPipelineInput.model_validate({"upload_artifact_id": 12, "checks": ["build", "lintian"]})
    assert old.source_artifact_id == 12 == old.upload_artifact_id
    assert [str(t) for t in old.tasks] == ["build", "lintian"]
    assert '"source_artifact_id":12' in old.model_dump_json()
    report = UploadReport.model_validate(
        {
            "workflow_id": "w",
            "source": "hello",
            "version": "1",
            "suite": "bookworm",
            "architectures": ["amd64"],
            "result": "success",
            "tasks": [],
            "upload_artifact_id": 5,
        }
    )
    assert report.source_artifact_id == 5 and report.builds == {} and report.retry_of is None


def test_one_builds_on_for_submissions_runs_and_campaigns() -> None:
    # dpkg's tables judge the wildcards
    assert builds_on("linux-any", "amd64") and builds_on("gnu-linux-any", "arm64")
    assert builds_on(["any-amd64"], "amd64") and not builds_on(["any-amd64"], "arm64")
    assert not builds_on("kfreebsd-any", "amd64") and not builds_on("armhf", "amd64")
    # `all`: a campaign tests an arch:all source everywhere; a run asks for arch-specific packages
    assert builds_on("all", "arm64") and not builds_on(["all"], "arm64", arch_all=False)
    assert builds_on("", "amd64")  # a suite entry without the field builds everywhere
    # the rule the histories of earlier runs were recorded with: no gnu-linux-any
    assert builds_on(["linux-any"], "amd64", arch_all=False, matches=recorded_wildcard_matches)
    assert not builds_on(["gnu-linux-any"], "amd64", arch_all=False, matches=recorded_wildcard_matches)
    # Recorded runs took an empty field to build nothing: their replays must decide the same.
    assert not builds_on(
        [], "amd64", arch_all=False, matches=recorded_wildcard_matches, empty_means_any=False
    )
