"""Payloads of campaigns: an upload's reverse dependencies tested against it and against the suite."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class RunResult(enum.StrEnum):
    """The verdict of one autopkgtest run, as britney2 reads exit codes."""

    PASS = "PASS"  # exit 0 or 2
    FAIL = "FAIL"  # 4, 6, 12, 14 and anything else that is not infrastructure
    NEUTRAL = "NEUTRAL"  # 8: no test ran
    # autopkgtest could not run: a file the mirror lacks, a source that does not unpack, a non-retryable
    # executor error. Says nothing about the package; never stored as a reference.
    UNTESTABLE = "UNTESTABLE"


class Verdict(enum.StrEnum):
    """A new run compared with its reference (britney2's classes, plus FLAKY after a re-run)."""

    REGRESSION = "REGRESSION"
    FLAKY = "FLAKY"
    ALWAYSFAIL = "ALWAYSFAIL"
    IMPROVEMENT = "IMPROVEMENT"
    PASS = "PASS"
    NEUTRAL = "NEUTRAL"
    NO_REFERENCE = "NO-REFERENCE"
    UNTESTABLE = "UNTESTABLE"  # the new or the reference run could not run (TargetVerdict.cause)


class CampaignKind(enum.StrEnum):
    """What a campaign runs per target and side: autopkgtest, or a build (a rebuild campaign)."""

    TEST = "test"
    REBUILD = "rebuild"


class Side(enum.StrEnum):
    NEW = "new"  # the test with the upload's binaries installed
    REFERENCE = "reference"  # the same test against the suite alone


class Simulation(BaseModel):
    """Settings of the simulated executor (load tests and benchmarks only)."""

    seed: int = 0
    duration_scale: float = 0.0  # 0: instant; 1: durations of a few seconds


class Pin(BaseModel):
    """Packages a run takes from another imported suite (debci's pin-packages): `src:NAME` means every
    binary built from source NAME, `NAME` one binary; everything else comes from the tested suite."""

    packages: list[str]
    suite: str

    @property
    def sources(self) -> list[str]:
        return [p.removeprefix("src:") for p in self.packages if p.startswith("src:")]

    @property
    def binaries(self) -> list[str]:
        return [p for p in self.packages if not p.startswith("src:")]

    def debci(self) -> list[str]:
        """The pin as debci's JSON writes it: ["foo,src:bar", "unstable"]."""
        return [",".join(self.packages), self.suite]


class CampaignTarget(BaseModel):
    source: str
    version: str
    expected_s: float | None = None  # median of its recent runs in the task history, when known


def longest_first(targets: list[CampaignTarget]) -> list[CampaignTarget]:
    """Targets ordered by expected duration, longest first, so that no batch ends on a long tail;
    a target without history is expected to take the mean of those with history."""
    known = [t.expected_s for t in targets if t.expected_s is not None]
    default = sum(known) / len(known) if known else 0.0
    filled = [t.model_copy(update={"expected_s": default}) if t.expected_s is None else t for t in targets]
    return sorted(filled, key=lambda t: -(t.expected_s or 0.0))


def expected_seconds(targets: list[CampaignTarget]) -> float:
    return sum(t.expected_s or 0.0 for t in targets)


class CampaignInput(BaseModel):
    """Start a campaign; `simulation` set means the simulated executor, never real tests."""

    trigger_source: str
    trigger_version: str
    trigger_binaries: list[str] = Field(default_factory=list)
    suite: str = "bookworm"
    architectures: list[str] = Field(default_factory=lambda: ["amd64"])
    batch_size: int = Field(default=500, ge=1, le=500)
    batches_in_flight: int = Field(default=4, ge=1, le=50)
    tests_in_flight: int = Field(default=400, ge=1, le=900)
    reference_max_age_days: int = 30
    test_timeout_s: float = 2 * 3600
    target_limit: int | None = Field(default=None, ge=1, description="test only the first N targets")
    # A batch continues as new before its history could pass this many events (Temporal warns at 10,240).
    history_budget: int = Field(default=10_000, ge=100, le=40_000)
    simulation: Simulation | None = None
    # Real campaigns: the upload (from its UploadPipeline run): its source package, whose tests the new
    # side of the trigger's own target runs, and its binary artifacts, which every new side installs.
    new_source_artifact_id: int | None = None
    new_binary_artifact_ids: list[int] = Field(default_factory=list)
    upload_workflow_id: str | None = None
    # A rebuild campaign builds its targets instead of testing them (docs/rebuilds.md); `all_sources`
    # rebuilds every source of the suite, not only those that build-depend on the trigger's binaries.
    kind: CampaignKind = CampaignKind.TEST
    all_sources: bool = False
    # What britney2 asks for (docs/campaigns.md "Given targets and pins"): these sources (their suite
    # versions) instead of the reverse dependencies; packages the new side takes from other imported
    # suites (a transition tested together; then no upload is needed).
    targets: list[str] | None = None
    pins: list[Pin] = Field(default_factory=list)
    # Run a reference for every target's exact version and suite state, never reusing a previous one.
    fresh_references: bool = False


class PlanInput(BaseModel):
    trigger_source: str
    trigger_binaries: list[str]
    suite: str
    architecture: str
    simulated: bool = False  # which task history predicts durations
    kind: CampaignKind = CampaignKind.TEST
    all_sources: bool = False
    # A page of the plan, longest first (an archive rebuild plans ~34,000 targets: more than one payload
    # may hold); None: every target, in the suite's order.
    offset: int = 0
    limit: int | None = None
    targets: list[str] | None = None  # given sources instead of the reverse dependencies


class CampaignPlan(BaseModel):
    suite_state: str
    trigger_binaries: list[str]
    targets: list[CampaignTarget]


class RunContext(BaseModel):
    """What every test run of one batch shares (the batch's `run_context` query answers it)."""

    trigger_source: str
    trigger_version: str
    suite: str
    suite_state: str
    architecture: str
    simulation: Simulation | None = None
    # Real runs, new side: the upload's source package and its debian:binary-package artifacts.
    new_source_artifact_id: int | None = None
    new_binary_artifact_ids: list[int] = Field(default_factory=list)
    kind: CampaignKind = CampaignKind.TEST
    # Real runs, new side: packages taken from other imported suites (a transition tested together).
    pins: list[Pin] = Field(default_factory=list)


class RunRequest(BaseModel):
    """A simulated test run as its batch schedules it: only what varies from run to run.

    The Temporal server keeps the input of every pending activity, and a batch keeps hundreds pending:
    measured on the dev server (docs/figures.md "Campaigns"), its CPU per no-op activity
    doubles between inputs of 100 and 200 bytes. The shared part comes from the batch's `run_context`
    query, once per worker and batch; defaults are left out of the JSON.
    """

    target: CampaignTarget
    side: Side
    attempt: int = 1

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.attempt == 1:
            data.pop("attempt", None)
        if self.target.expected_s is None:
            data["target"].pop("expected_s", None)
        return data


class RunInput(RunContext):
    """One test run with its batch's context: what the test activities work from."""

    target: CampaignTarget
    side: Side
    attempt: int = 1

    @classmethod
    def of(cls, request: RunRequest, context: RunContext) -> RunInput:
        return cls(**context.model_dump(), target=request.target, side=request.side, attempt=request.attempt)


class RunOutcome(BaseModel):
    result: RunResult
    exit_code: int | None = None  # None: autopkgtest did not run (UNTESTABLE)
    tests: dict[str, str] = Field(default_factory=dict)  # test name → PASS/FAIL/SKIP/…
    log_artifact_id: int | None = None
    duration_s: float = 0.0
    # For the task history the batch records in bulk.
    started_at: datetime | None = None
    worker: str = ""
    cause: str | None = None  # why an UNTESTABLE run could not run


class RunRecord(BaseModel):
    """One finished run, for the task history."""

    target: CampaignTarget
    side: Side
    attempt: int
    outcome: RunOutcome


class RecordRunsInput(BaseModel):
    suite: str
    architecture: str
    simulated: bool
    runs: list[RunRecord]
    # The chunk's verdicts, stored for the campaign report (activities/campaigns/campaign_verdicts.py).
    campaign_id: str | None = None
    verdicts: list[TargetVerdict] = Field(default_factory=list)
    kind: CampaignKind = CampaignKind.TEST


class ReferenceKey(BaseModel):
    source: str
    version: str
    architecture: str
    suite: str
    suite_state: str
    kind: CampaignKind = CampaignKind.TEST

    @model_serializer(mode="wrap")
    def _without_default_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Test campaigns' payloads and stored claims stay as they were before rebuilds existed.
        data: dict[str, Any] = handler(self)
        if self.kind is CampaignKind.TEST:
            data.pop("kind", None)
        return data

    @property
    def name(self) -> str:
        """The item name in the debian:qa-results collection: one reference per key (and kind)."""
        prefix = "rebuild:" if self.kind is CampaignKind.REBUILD else ""
        return f"{prefix}{self.source}_{self.version}_{self.architecture}_{self.suite_state[:16]}"


class ClaimReferencesInput(BaseModel):
    keys: list[ReferenceKey]
    owner: str  # the workflow that runs the claimed references
    max_age_days: int
    lease_s: float
    # A key without a result of its own takes the newest result of the same source, architecture and
    # suite for an earlier version or suite state (britney2's reuse until a fresh one exists).
    previous: bool = False


class ClaimReferencesResult(BaseModel):
    found: dict[str, RunOutcome] = Field(default_factory=dict)  # key name → stored result
    previous: dict[str, str] = Field(default_factory=dict)  # found key name → the version that ran it
    claimed: list[str] = Field(default_factory=list)  # we run these
    waiting: list[str] = Field(default_factory=list)  # someone else runs these now
    owners: dict[str, str] = Field(default_factory=dict)  # waiting key name → the workflow running it


class ReleaseReferencesInput(BaseModel):
    """Claims a batch gives up without a result (it failed or was cancelled): the next claimer runs them."""

    owner: str
    keys: list[ReferenceKey]


class StoreReferencesInput(BaseModel):
    owner: str
    results: dict[str, RunOutcome]  # key name → outcome
    keys: list[ReferenceKey]


class TargetVerdict(BaseModel):
    source: str
    version: str
    architecture: str
    verdict: Verdict
    new: RunResult
    reference: RunResult | None
    regressed_tests: list[str] = Field(default_factory=list)
    new_log_artifact_id: int | None = None
    reference_log_artifact_id: int | None = None
    attempts: int = 1
    cause: str | None = None  # UNTESTABLE: which side could not run, and why
    # The reference was an earlier result reused (of this version, or of this one at an earlier suite
    # state): the version it ran. None: a reference of this very version and suite state.
    reference_version: str | None = None


# A campaign's result and a batch's continue-as-new input carry at most this many notable verdicts (each
# a few hundred bytes; payloads are limited to 2 MB). Every verdict is stored (`debflow report --all`).
NOTABLE_KEPT = 1000


class BatchResult(BaseModel):
    counts: dict[str, int] = Field(default_factory=dict)
    notable: list[TargetVerdict] = Field(default_factory=list)  # all but PASS and NEUTRAL, most telling first
    notable_omitted: int = 0  # beyond NOTABLE_KEPT: counted, listed only among the stored verdicts
    tests_run: int = 0
    references_reused: int = 0
    max_history_events: int = 0

    def add(self, other: BatchResult) -> None:
        for verdict, count in other.counts.items():
            self.counts[verdict] = self.counts.get(verdict, 0) + count
        self.notable += other.notable
        self.notable_omitted += other.notable_omitted
        if len(self.notable) > NOTABLE_KEPT:
            # A mirror that is down makes every target UNTESTABLE: regressions must still be listed.
            order = list(Verdict)
            self.notable.sort(key=lambda v: order.index(v.verdict))
            self.notable_omitted += len(self.notable) - NOTABLE_KEPT
            del self.notable[NOTABLE_KEPT:]
        self.tests_run += other.tests_run
        self.references_reused += other.references_reused
        self.max_history_events = max(self.max_history_events, other.max_history_events)


class BatchInput(BaseModel):
    campaign: CampaignInput
    campaign_id: str
    suite_state: str
    architecture: str
    targets: list[CampaignTarget]
    # What earlier runs of this batch decided, carried over continue-as-new.
    done: BatchResult = Field(default_factory=BatchResult)
    done_targets: int = 0


class BatchProgress(BaseModel):
    targets: int
    done_targets: int
    counts: dict[str, int]
    expected_total_s: float = 0.0
    expected_done_s: float = 0.0
    # While another campaign runs references this batch needs: reference key name → that workflow's id.
    waiting_for: dict[str, str] = Field(default_factory=dict)

    def waiting_text(self) -> str:
        """'waiting for REFERENCE (run by WORKFLOW)' and how many more, or '' when not waiting."""
        if not self.waiting_for:
            return ""
        name, owner = min(self.waiting_for.items())
        more = len(self.waiting_for) - 1
        return f"waiting for reference {name} (run by {owner or 'another batch'})" + (
            f" and {more} more" if more else ""
        )


class CampaignProgress(BaseModel):
    planned_targets: int = 0
    batches: int = 0
    batches_done: int = 0
    running_batches: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    # Test time the task history predicts, in total and for the batches already finished.
    expected_total_s: float = 0.0
    expected_finished_s: float = 0.0


class CampaignReport(BaseModel):
    workflow_id: str
    kind: CampaignKind = CampaignKind.TEST
    trigger_source: str
    trigger_version: str
    suite: str
    architectures: list[str]
    simulated: bool
    targets: int
    counts: dict[str, int]
    notable: list[TargetVerdict]
    notable_omitted: int = 0  # notable verdicts beyond NOTABLE_KEPT, listed by `debflow report --all`
    tests_run: int
    references_reused: int
    batches: int
    max_history_events: int
