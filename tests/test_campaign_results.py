"""A campaign's result stays within Temporal's payload limit however many targets are notable."""

from __future__ import annotations

from models.campaign import NOTABLE_KEPT, BatchResult, RunResult, TargetVerdict, Verdict


def _verdict(i: int, verdict: Verdict) -> TargetVerdict:
    return TargetVerdict(
        source=f"pkg{i}",
        version="1.0-1",
        architecture="amd64",
        verdict=verdict,
        new=RunResult.UNTESTABLE if verdict is Verdict.UNTESTABLE else RunResult.FAIL,
        reference=RunResult.PASS,
        cause="new run: the mirror lacks pool/main/p/pkg/pkg_1.0.orig.tar.xz (HTTP 404), still after 4 tries"
        if verdict is Verdict.UNTESTABLE
        else None,
    )


def test_notable_verdicts_are_bounded_and_regressions_kept_first() -> None:
    """A mirror that is down makes 4,000 targets UNTESTABLE: the result keeps NOTABLE_KEPT of them, counts
    the rest, and never drops a regression for an untestable target."""
    total = BatchResult()
    for batch in range(8):
        part = BatchResult(notable=[_verdict(batch * 500 + i, Verdict.UNTESTABLE) for i in range(500)])
        part.counts[Verdict.UNTESTABLE] = 500
        if batch == 7:
            part.notable.append(_verdict(9999, Verdict.REGRESSION))
            part.counts[Verdict.REGRESSION] = 1
        total.add(part)
    assert len(total.notable) == NOTABLE_KEPT
    assert total.notable_omitted == 4001 - NOTABLE_KEPT
    assert total.notable[0].verdict is Verdict.REGRESSION
    assert total.counts == {Verdict.UNTESTABLE: 4000, Verdict.REGRESSION: 1}
    assert len(total.model_dump_json()) < 1_000_000  # well under Temporal's 2 MB per payload
