"""`vidrec bench drift`'s summary of a scenario's windows: false alarms, delay, features."""

from __future__ import annotations

from typing import Any

from vidrec.bench.drift import _summary


def _w(after: bool, status: str, drifting: list[str] | None = None) -> dict[str, Any]:
    return {"after_onset": after, "status": status, "drifting": drifting or [],
            "prediction_drift": False}  # fmt: skip


def test_false_alarms_count_only_windows_where_nothing_changed() -> None:
    ws = [_w(False, "ok"), _w(False, "drift", ["a"]), _w(False, "insufficient_data"),
          _w(True, "ok"), _w(True, "drift", ["b"]), _w(True, "drift", ["b", "c"])]  # fmt: skip
    s = _summary("new-market", ws, onset=0)
    assert s["quiet_windows"] == 2 and s["false_alarm_rate"] == 0.5
    assert s["windows_insufficient"] == 1
    assert s["detection_delay_windows"] == 1  # the second tested window after onset
    assert s["features_flagged_after_onset"] == {"b": 2, "c": 1}
    assert s["detected_share_after_onset"] == round(2 / 3, 3)


def test_in_the_none_scenario_every_window_is_quiet() -> None:
    ws = [_w(True, "ok"), _w(True, "drift", ["a"])]
    s = _summary("none", ws, onset=0)
    assert s["false_alarm_rate"] == 0.5 and s["detection_delay_windows"] is None
