"""Settings carry their units in their names; deployments that set the names from before still work."""

from __future__ import annotations

import pytest

from worker.settings import Settings

RENAMED = {
    "build_timeout_s": "DEBFLOW_BUILD_TIMEOUT",
    "lintian_timeout_s": "DEBFLOW_LINTIAN_TIMEOUT",
    "autopkgtest_timeout_s": "DEBFLOW_AUTOPKGTEST_TIMEOUT",
    "heartbeat_timeout_s": "DEBFLOW_HEARTBEAT_TIMEOUT",
    "heartbeat_interval_s": "DEBFLOW_HEARTBEAT_INTERVAL",
}


@pytest.mark.parametrize(("field", "old"), RENAMED.items())
def test_a_renamed_setting_reads_its_new_and_its_old_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, old: str
) -> None:
    for name in (old, f"{old}_S"):
        monkeypatch.delenv(name, raising=False)
    default = getattr(Settings(), field)
    monkeypatch.setenv(old, "123")
    assert getattr(Settings(), field) == 123 != default
    monkeypatch.setenv(f"{old}_S", "45")  # both set: the new name wins
    assert getattr(Settings(), field) == 45
    assert getattr(Settings(**{field: 6}), field) == 6  # code sets it by its name


def test_durations_and_sizes_name_their_unit() -> None:
    units = ("_s", "_ms", "_days", "_bytes")
    durations = [
        name
        for name, field in Settings.model_fields.items()
        if field.annotation in (float, "float") and not name.endswith(units)
    ]
    # Factors and rates are ratios, not quantities with a unit.
    assert durations == ["timeout_history_factor", "fault_after_store_rate"]
