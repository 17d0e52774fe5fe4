"""debci's test requests (britney2's way of asking for autopkgtest runs) and what debflow makes of them.

A request names a source package to test in a suite on an architecture, a trigger (what britney2 wants
to migrate: `SOURCE/VERSION` words, or `migration-reference/0` for a baseline run against the suite
alone) and pins: sources or binaries taken from another imported suite, everything else from the tested
one. Identical requests while one is pending are one *job* (debci's pending check); a job's status is
debci's reading of autopkgtest's exit code. docs/debci-api.md has the HTTP side.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from models.campaign import CampaignKind, Pin, ReferenceKey, RunResult, Simulation
from models.identifiers import NAME_MAX, VERSION_MAX

MIGRATION_REFERENCE = "migration-reference/0"  # britney2's baseline trigger: the suite alone, no pins
PRIORITY_MIN, PRIORITY_MAX = 1, 10  # debci's range; higher is more urgent
PRIORITY_DEFAULT = 1  # debci's default
TRIGGER_MAX = 1000  # characters of a trigger (britney2 joins a few SOURCE/VERSION words)

SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
BINARY_NAME = SOURCE_NAME
# Debian versions: [epoch:]upstream[-revision]; what dpkg accepts in a version's characters.
VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*")
SUITE_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*")


@dataclass(frozen=True)
class Requester:
    """An authenticated caller of the API (a row of api_key)."""

    id: int
    name: str
    is_admin: bool = False


class BadRequest(ValueError):
    """A test request debflow refuses: one line naming the problem (HTTP 400)."""


class DebciStatus(enum.StrEnum):
    """A finished job's status as debci reports it; a pending job's status is null."""

    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"
    TMPFAIL = "tmpfail"


def debci_status(exit_code: int) -> DebciStatus:
    """debci's reading of autopkgtest's exit code: 0, 2 pass; 4, 6, 12, 14 fail; 8 neutral; 16 (testbed
    failure) and every other code tmpfail."""
    if exit_code in (0, 2):
        return DebciStatus.PASS
    if exit_code in (4, 6, 12, 14):
        return DebciStatus.FAIL
    if exit_code == 8:
        return DebciStatus.NEUTRAL
    return DebciStatus.TMPFAIL


_RUN_RESULTS = {
    DebciStatus.PASS: RunResult.PASS,
    DebciStatus.FAIL: RunResult.FAIL,
    DebciStatus.NEUTRAL: RunResult.NEUTRAL,
}


def run_result_of(status: DebciStatus) -> RunResult | None:
    """The campaign reading of a finished job (None: tmpfail, which is never a reference)."""
    return _RUN_RESULTS.get(status)


def parse_pins(value: Any) -> list[Pin]:
    """debci's `pin-packages`: a list of [packages, suite] pairs, packages comma-separated `NAME` or
    `src:NAME`; each suite at most once (as debci documents)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("pin-packages must be a list of [packages, suite] pairs")
    pins: list[Pin] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise BadRequest(f"pin-packages item {json.dumps(item)[:80]} is not a [packages, suite] pair")
        names, suite = item
        if not SUITE_NAME.fullmatch(suite):
            raise BadRequest(f"pin-packages suite {suite[:40]!r} is not a suite name")
        if suite in {p.suite for p in pins}:
            raise BadRequest(f"pin-packages names suite {suite!r} twice (each suite at most once)")
        packages = [n.strip() for n in names.split(",")]
        for name in packages:
            bare = name.removeprefix("src:")
            if not (SOURCE_NAME.fullmatch(bare) and len(bare) <= NAME_MAX):
                raise BadRequest(f"pin-packages names {name[:40]!r}: not a package name (NAME or src:NAME)")
        pins.append(Pin(packages=sorted(set(packages)), suite=suite))
    return sorted(pins, key=lambda p: p.suite)


def check_package(name: Any) -> str:
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name) or len(name) > NAME_MAX:
        shown = name[:40] if isinstance(name, str) else json.dumps(name)[:40]
        raise BadRequest(f"invalid package name {shown!r}: a source package name is [a-z0-9][a-z0-9+.-]+")
    return name


def parse_trigger(value: Any) -> str:
    """`SOURCE/VERSION` words separated by spaces, or `migration-reference/0`."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("trigger is missing: SOURCE/VERSION (or migration-reference/0)")
    if len(value) > TRIGGER_MAX:
        raise BadRequest(f"trigger is {len(value)} characters long; at most {TRIGGER_MAX} are accepted")
    if value == MIGRATION_REFERENCE:
        return value
    for word in value.split():
        source, slash, version = word.partition("/")
        if not (slash and SOURCE_NAME.fullmatch(source) and VERSION.fullmatch(version)):
            raise BadRequest(f"invalid trigger word {word[:60]!r}: SOURCE/VERSION (or migration-reference/0)")
        if len(source) > NAME_MAX or len(version) > VERSION_MAX:
            raise BadRequest(f"trigger word {word[:60]!r} is longer than Debian's file names allow")
    return " ".join(value.split())


def check_priority(value: Any) -> int:
    try:
        priority = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"invalid priority {str(value)[:20]!r}: an integer from 1 to 10") from None
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX or isinstance(value, bool):
        raise BadRequest(f"invalid priority {priority}: an integer from 1 to 10")
    return priority


def temporal_priority(priority: int) -> int:
    """debci's 1 to 10 (10 first) onto Temporal priority keys below uploads (2): 3 for 8 to 10, 4 (campaigns'
    key) for 4 to 7, 5 for 1 to 3."""
    return 3 if priority >= 8 else 4 if priority >= 4 else 5


class TestRequest(BaseModel):
    """One checked test request of a call (a `tests` item, or the URL of the one-package form)."""

    __test__ = False  # a payload, not a pytest test class

    package: str
    trigger: str
    pins: list[Pin] = Field(default_factory=list)
    priority: int = PRIORITY_DEFAULT
    is_private: bool = False

    @property
    def is_reference(self) -> bool:
        return self.trigger == MIGRATION_REFERENCE and not self.pins


def job_key(suite: str, architecture: str, request: TestRequest, requester_id: int) -> str:
    """What makes two requests the same job: suite, architecture, package, trigger and pins (a private
    request is shared with no other requester)."""
    parts: list[Any] = [
        suite,
        architecture,
        request.package,
        request.trigger,
        [p.debci() for p in request.pins],
    ]
    if request.is_private:
        parts.append(["private", requester_id])
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


# --- the workflow's payloads ----------------------------------------------------------------------


class JobRun(BaseModel):
    """One job as its batch runs it: the version of the package the suite holds, and what it installs."""

    job_id: int
    package: str
    version: str
    trigger: str
    pins: list[Pin] = Field(default_factory=list)
    priority_key: int = 4  # models.debci.temporal_priority of the request's priority
    # Private jobs share nothing: not even a baseline run with the campaigns' references.
    private: bool = False

    @model_serializer(mode="wrap")
    def _small(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A batch of 25,000 jobs travels in pages: defaults stay out of the JSON.
        data: dict[str, Any] = handler(self)
        if not self.pins:
            data.pop("pins", None)
        if self.priority_key == 4:
            data.pop("priority_key", None)
        if not self.private:
            data.pop("private", None)
        return data

    @property
    def is_reference(self) -> bool:
        """A baseline run shared with the campaigns' references (the suite alone, not private)."""
        return self.trigger == MIGRATION_REFERENCE and not self.pins and not self.private

    def reference_key(self, suite: str, suite_state: str, architecture: str) -> ReferenceKey:
        """The campaigns' reference this job shares (debian:qa-results), in both directions."""
        return ReferenceKey(
            source=self.package,
            version=self.version,
            architecture=architecture,
            suite=suite,
            suite_state=suite_state,
            kind=CampaignKind.TEST,
        )


class JobBatchInput(BaseModel):
    """The jobs one API call created, for one suite and architecture: ids first_job … last_job.

    The API starts the batch before it commits the jobs (in the same transaction): `txid` is that
    transaction, so the batch waits until it is decided and runs nothing if it rolled back."""

    suite: str
    architecture: str
    first_job: int
    last_job: int
    txid: int
    requester: str  # the fairness key of every test: one requester's jobs cannot starve another's
    simulation: Simulation | None = None  # the simulated executor (load tests and benchmarks only)
    tests_in_flight: int = Field(default=400, ge=1, le=900)
    test_timeout_s: float = 2 * 3600
    tmpfail_tries: int = Field(default=3, ge=1)
    tmpfail_backoff_s: float = Field(default=60, gt=0)
    history_budget: int = Field(default=10_000, ge=100, le=40_000)
    # Carried over continue-as-new.
    offset: int = 0
    counts: dict[str, int] = Field(default_factory=dict)


class JobPageInput(BaseModel):
    batch: str  # the batch's workflow id, which its jobs carry
    first_job: int
    last_job: int
    txid: int
    suite: str
    after: int = 0  # job ids above this one
    limit: int = 2000


class JobPage(BaseModel):
    """A page of a batch's pending jobs, in id order, and the suite state they run against."""

    suite_state: str
    jobs: list[JobRun]


class JobResult(BaseModel):
    job_id: int
    status: DebciStatus
    version: str
    exit_code: int | None = None
    log_artifact_id: int | None = None
    duration_s: float = 0.0
    worker: str = ""
    cause: str | None = None  # tmpfail: why it could not run
    reused_reference: bool = False  # answered by a stored reference result


class RecordJobsInput(BaseModel):
    suite: str
    architecture: str
    results: list[JobResult]
    simulated: bool = False
