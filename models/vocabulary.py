"""debflow's words, one place each: artifact, collection and item categories, task and activity names,
task status and result, and what an autopkgtest exit code means.

StrEnums, so that a member *is* its stored string: rows, artifacts and recorded workflow histories keep
the values they always had, and code compares and stores members instead of retyped literals.
"""

from __future__ import annotations

import enum


class ArtifactCategory(enum.StrEnum):
    """What an artifact holds (Debusine's namespaced categories); each has a data model in
    models/artifacts.py."""

    SOURCE_PACKAGE = "debian:source-package"  # a .dsc and its files: what `debflow submit` stores
    UPLOAD = "debian:upload"  # the .changes of a build and the files it lists
    BINARY_PACKAGE = "debian:binary-package"  # one .deb
    PACKAGE_BUILD_LOG = "debian:package-build-log"
    LINTIAN = "debian:lintian"
    AUTOPKGTEST = "debian:autopkgtest"
    SYSTEM_TARBALL = "debian:system-tarball"  # a build and test environment (unshare executor)
    DEBDIFF = "debian:debdiff"  # an upload against the suite's version: source, binaries, lintian tags
    BLHC = "debian:blhc"  # missing hardening flags in a build log
    PIUPARTS = "debian:piuparts"  # install, remove, purge and upgrade in an isolated testbed


class CollectionCategory(enum.StrEnum):
    """What a collection gathers."""

    SUITE = "debian:suite"  # an imported suite state: its source and binary items
    QA_RESULTS = "debian:qa-results"  # a suite's campaign references and verdicts


class ItemCategory(enum.StrEnum):
    """What an item of a collection is."""

    SOURCE = "debian:source"  # of a suite
    BINARY = "debian:binary"  # of a suite
    QA_RESULT = "debian:qa-result"  # of a qa-results collection


class TaskStatus(enum.StrEnum):
    """Where a task is (Debusine's work-request status). How it ended is its TaskResult."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    ABORTED = "aborted"
    # Older reports (and recorded histories) say these as a status; they still load.
    SKIPPED = "skipped"
    ERROR = "error"


class TaskResult(enum.StrEnum):
    """How a completed task ended (Debusine's work-request result); stored in task history and in the
    `result` of build, lintian and autopkgtest artifacts."""

    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"  # infrastructure: says nothing about the package
    SKIPPED = "skipped"  # nothing to do, or nothing ran


class TaskName(enum.StrEnum):
    """The `task_name` of task-history rows (with subject and context, a row's key)."""

    BUILD = "build"
    LINTIAN = "lintian"
    AUTOPKGTEST = "autopkgtest"
    SIMULATED_AUTOPKGTEST = "simulated-autopkgtest"
    ENVIRONMENT = "environment"  # making or waiting for a build and test environment
    REBUILD = "rebuild"  # a rebuild campaign's build of a target (docs/rebuilds.md)
    SIMULATED_REBUILD = "simulated-rebuild"
    DEBDIFF = "debdiff"
    BLHC = "blhc"
    PIUPARTS = "piuparts"


class ActivityName(enum.StrEnum):
    """The registry of activity names: workflows call activities by these, workers register them
    (tests/test_vocabulary.py checks that every one is registered on a worker)."""

    # upload pipeline
    DESCRIBE_UPLOAD = "describe_upload"
    ESTIMATE_TIMEOUTS = "estimate_timeouts"
    BUILD_PACKAGE = "build_package"
    RUN_LINTIAN = "run_lintian"
    RUN_AUTOPKGTEST = "run_autopkgtest"
    RECORD_TASK_ERROR = "record_task_error"
    RUN_DEBDIFF = "run_debdiff"
    RUN_BLHC = "run_blhc"
    RUN_PIUPARTS = "run_piuparts"
    # campaigns
    PLAN_CAMPAIGN = "plan_campaign"
    CLAIM_REFERENCES = "claim_references"
    RELEASE_REFERENCES = "release_references"
    STORE_REFERENCE_RESULTS = "store_reference_results"
    RUN_CAMPAIGN_TEST = "run_campaign_test"
    RUN_ARCHIVE_TEST = "run_archive_test"
    RECORD_RUNS = "record_runs"
    RUN_ARCHIVE_BUILD = "run_archive_build"  # rebuild campaigns, real executors
    # debci's API (britney2's test requests)
    PLAN_DEBCI_JOBS = "plan_debci_jobs"
    RECORD_DEBCI_RESULTS = "record_debci_results"
    EXPIRE_DEBCI_JOBS = "expire_debci_jobs"
    # expiry
    SYNC_RUNNING_WORKFLOWS = "sync_running_workflows"
    PRUNE_QA_RESULTS = "prune_qa_results"
    EXPIRE_COLLECTION_ITEMS = "expire_collection_items"
    EXPIRE_ARTIFACTS = "expire_artifacts"
    COLLECT_ORPHAN_BLOBS = "collect_orphan_blobs"
    # notifications (webhooks)
    POLL_NEWS = "poll_news"
    DELIVER_WEBHOOK = "deliver_webhook"


class TestOutcome(enum.StrEnum):
    """What one autopkgtest run says, as debci reads its exit code."""

    __test__ = False  # a vocabulary word, not a pytest test class

    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"  # no test ran, or every test was skipped
    TEMPFAIL = "tempfail"  # the testbed or autopkgtest failed: retried, never a verdict


# autopkgtest(1) EXIT STATUS, read as debci reads it: 0 all passed; 2 passed, some skipped; 4 a test
# failed; 6 = 4|2; 8 no test ran (none, or all skipped); 12 erroneous package; 14 = 12|2; 16 testbed
# failure; 20 other unexpected failure.
AUTOPKGTEST_EXIT_CODES: dict[int, TestOutcome] = {
    0: TestOutcome.PASS,
    2: TestOutcome.PASS,
    4: TestOutcome.FAIL,
    6: TestOutcome.FAIL,
    12: TestOutcome.FAIL,
    14: TestOutcome.FAIL,
    8: TestOutcome.NEUTRAL,
    16: TestOutcome.TEMPFAIL,
    20: TestOutcome.TEMPFAIL,
}


def autopkgtest_outcome(exit_code: int) -> TestOutcome:
    """The one reading of an autopkgtest exit code (a code autopkgtest does not document: FAIL)."""
    return AUTOPKGTEST_EXIT_CODES.get(exit_code, TestOutcome.FAIL)


_TASK_RESULTS = {
    TestOutcome.PASS: TaskResult.SUCCESS,
    TestOutcome.FAIL: TaskResult.FAILURE,
    TestOutcome.NEUTRAL: TaskResult.SKIPPED,
    TestOutcome.TEMPFAIL: TaskResult.ERROR,
}


def autopkgtest_result(exit_code: int) -> TaskResult:
    """The `result` every debian:autopkgtest artifact stores for an exit code, upload or campaign run."""
    return _TASK_RESULTS[autopkgtest_outcome(exit_code)]
