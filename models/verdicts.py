"""How runs become verdicts: britney2's reading of autopkgtest exit codes and of new against reference."""

from __future__ import annotations

from models.campaign import CampaignTarget, RunOutcome, RunResult, TargetVerdict, Verdict
from models.vocabulary import AUTOPKGTEST_EXIT_CODES, TestOutcome, autopkgtest_outcome

# autopkgtest(1): 16 = the testbed failed, 20 = another unexpected failure. Neither says anything about
# the package, so neither is a verdict: such a run is an infrastructure error and is retried.
INFRASTRUCTURE_EXIT_CODES = frozenset(
    code for code, outcome in AUTOPKGTEST_EXIT_CODES.items() if outcome is TestOutcome.TEMPFAIL
)
_RUN_RESULTS = {
    TestOutcome.PASS: RunResult.PASS,
    TestOutcome.FAIL: RunResult.FAIL,
    TestOutcome.NEUTRAL: RunResult.NEUTRAL,
}


def run_result(exit_code: int) -> RunResult | None:
    """PASS, FAIL or NEUTRAL for an autopkgtest exit code; None for an infrastructure error."""
    return _RUN_RESULTS.get(autopkgtest_outcome(exit_code))


def compare(new: RunResult, reference: RunResult | None) -> Verdict:
    """The class of a new run given its reference run (None: no reference exists yet). A run that could
    not run on either side decides nothing: UNTESTABLE, never a regression or a pass."""
    if RunResult.UNTESTABLE in (new, reference):
        return Verdict.UNTESTABLE
    if reference is None:
        return Verdict.NO_REFERENCE
    if new is RunResult.FAIL:
        return Verdict.ALWAYSFAIL if reference is RunResult.FAIL else Verdict.REGRESSION
    if new is RunResult.PASS:
        return Verdict.IMPROVEMENT if reference is RunResult.FAIL else Verdict.PASS
    return Verdict.NEUTRAL


def after_rerun(rerun: RunResult) -> Verdict:
    """A REGRESSION is confirmed only if the re-run of the new side fails again."""
    if rerun is RunResult.UNTESTABLE:
        return Verdict.UNTESTABLE
    return Verdict.REGRESSION if rerun is RunResult.FAIL else Verdict.FLAKY


def regressed_tests(new: dict[str, str], reference: dict[str, str]) -> list[str]:
    """Tests (by their debian/tests/control names) that failed now and did not fail before."""
    return sorted(
        name for name, status in new.items() if status == "FAIL" and reference.get(name, "PASS") != "FAIL"
    )


def target_verdict(
    target: CampaignTarget,
    architecture: str,
    new: RunOutcome,
    ref: RunOutcome | None,
    reference_version: str | None,
) -> TargetVerdict:
    """A target's verdict from its new run and its reference (None: there is none)."""
    return TargetVerdict(
        source=target.source,
        version=target.version,
        architecture=architecture,
        verdict=compare(new.result, ref.result if ref else None),
        new=new.result,
        reference=ref.result if ref else None,
        regressed_tests=regressed_tests(new.tests, ref.tests if ref else {}),
        new_log_artifact_id=new.log_artifact_id,
        reference_log_artifact_id=ref.log_artifact_id if ref else None,
        cause=untestable_cause(new, ref),
        reference_version=reference_version,
    )


def untestable_cause(new: RunOutcome, reference: RunOutcome | None) -> str | None:
    """Why a target is UNTESTABLE: the side that could not run and its error."""
    causes = [
        f"{side} run: {o.cause}" for side, o in (("new", new), ("reference", reference)) if o and o.cause
    ]
    return "; ".join(causes) or None
