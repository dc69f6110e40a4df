"""`vidrec bench drift`'s summary of a scenario's windows: false alarms, delay, features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from vidrec.bench import drift
from vidrec.bench.drift import _served, _served_ctr, _summary
from vidrec.training.serving_reference import ServedRows


def _w(
    after: bool, status: str, drifting: list[str] | None = None, seed: int = 0
) -> dict[str, Any]:
    return {"after_onset": after, "status": status, "drifting": drifting or [],
            "prediction_drift": False, "seed": seed}  # fmt: skip


def test_false_alarms_count_only_windows_where_nothing_changed() -> None:
    ws = [_w(False, "ok"), _w(False, "drift", ["a"]), _w(False, "insufficient_data"),
          _w(True, "ok"), _w(True, "drift", ["b"]), _w(True, "drift", ["b", "c"])]  # fmt: skip
    s = _summary("new-market", ws)
    assert s["quiet_windows"] == 2 and s["false_alarm_rate"] == 0.5
    assert s["windows_insufficient"] == 1
    assert s["detection_delay_windows"] == 1  # the second tested window after onset
    assert s["features_flagged_after_onset"] == {"b": 2, "c": 1}
    assert s["detected_share_after_onset"] == round(2 / 3, 3)


def test_the_delay_is_the_worst_platforms() -> None:
    ws = [_w(False, "drift", ["a"], 0), _w(True, "drift", ["b"], 0),
          _w(True, "ok", seed=1), _w(True, "ok", seed=1), _w(True, "drift", ["b"], 1)]  # fmt: skip
    s = _summary("new-market", ws)
    assert s["detection_delays"] == [0, 2] and s["detection_delay_windows"] == 2
    assert s["false_alarm_windows"] == 1 and s["quiet_windows"] == 1
    missed = _summary("new-market", [*ws, _w(True, "ok", seed=2)])
    assert missed["detection_delays"] == [0, 2, None]
    assert missed["detection_delay_windows"] is None  # a platform where it was never seen


def test_in_the_none_scenario_every_window_is_quiet() -> None:
    ws = [_w(True, "ok"), _w(True, "drift", ["a"])]
    s = _summary("none", ws)
    assert s["false_alarm_rate"] == 0.5 and s["detection_delay_windows"] is None


def test_served_ctr_pools_the_windows_on_each_side_of_onset() -> None:
    ws = [{**_w(after, "ok", seed=4), "impressions": n, "clicks": c}
          for after, n, c in ((False, 100, 20), (False, 300, 20), (True, 200, 30))]  # fmt: skip
    got = _served_ctr(ws)
    assert got == {"seed": 4, "before": 0.1, "after": 0.15, "change": 0.5}
    assert _served_ctr(ws[:2])["after"] is None and _served_ctr(ws[:2])["change"] is None


def test_ctr_drop_compares_a_span_of_windows_with_the_windows_before_it() -> None:
    from vidrec.bench.drift import ctr_drops
    from vidrec.config import AlertConfig

    a = AlertConfig(ctr_drop=0.2, ctr_z=2.0)
    shown = [(1000, 50), (1000, 50), (1000, 45), (1000, 30), (0, 0), (1000, 20)]
    # one window against two: 2: 4.5 % vs 5 % (10 % down: quiet); 3: 3 % vs 4.75 % (37 %
    # down, z = 2.3: alarm); 4: nothing shown; 5: 2 % vs window 3's 3 % alone (33 % down,
    # but z = 1.4); 0 and 1 lack a baseline: not tested
    assert ctr_drops(shown, a, 1, 2) == [None, None, False, True, False, False]
    assert ctr_drops(shown, a.model_copy(update={"ctr_drop": 0.4}), 1, 2)[3] is False
    # two windows against two: 3: 3.75 % vs 5 % (25 % down, z = 1.9: quiet); 4: window 4
    # shows nothing, so window 3's 3 % vs 4.75 % (z = 2.3: alarm); 5: 2 % vs 3.75 % (z = 2.6)
    assert ctr_drops(shown, a, 2, 2) == [None, None, None, False, True, True]


def test_a_window_the_ctr_drop_could_not_test_is_neither_quiet_nor_an_alarm() -> None:
    from vidrec.bench.drift import _as_alarm

    ws = [_as_alarm({**_w(False, "ok"), "ctr_drop": d}, d) for d in (None, False, True)]
    s = _summary("interest-shift", ws)
    assert s["quiet_windows"] == 2 and s["false_alarm_windows"] == 1
    assert s["windows_insufficient"] == 1


def test_outcomes_click_the_top_of_each_slate_as_the_oracle_says() -> None:
    import numpy as np
    import pandas as pd

    from vidrec.bench.drift import _outcomes
    from vidrec.data.oracle import Oracle
    from vidrec.training.serving_reference import ServedRows

    k = 4
    topic = np.eye(k, dtype=np.float32)[[0, 1, 2, 3]]  # video v is about topic v
    oracle = Oracle(interest=topic[[0, 3]] * 3, interest_after=topic[[0, 3]] * 3,
                    shifted=np.zeros(2, bool), shift_ts=None, topic=topic,
                    quality=np.ones(4, np.float32), user_lang=np.zeros(2, np.int8),
                    video_lang=np.zeros(4, np.int8), duration=np.ones(4, np.float32),
                    examination_decay=50.0)  # fmt: skip
    # request 1 (user 0) ranks video 0 first, request 2 (user 1) ranks video 0 first too;
    # with examination 2^-50 below the top, only first positions are ever clicked
    served = ServedRows(np.array([1, 1, 2, 2, 2]), np.zeros((5, 1)),
                        np.array([0.9, 0.1, 0.8, 0.7, 0.1]), np.array([0, 3, 0, 3, 1]))  # fmt: skip
    part = pd.DataFrame({"request_id": [1, 2], "user_id": [0, 1], "ts": [0, 0]})
    runs = [_outcomes(served, part, oracle, 2, np.random.default_rng(s)) for s in range(200)]
    assert {imps for imps, _ in runs} == {4}  # top 2 of each request
    clicks = np.mean([c for _, c in runs])
    # user 0 loves video 0 (p = sigmoid(11.6) ~ 1); user 1 cares for topic 3, but its top
    # is video 0 (sigmoid(-0.4) = 0.40): 1.40 (2.0 if the slate ignored the scores)
    assert 1.3 < clicks < 1.5


class _Path:
    """Serves each request as one row, its time as the score; records each call's size."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def serve(self, frame: pd.DataFrame) -> ServedRows:
        self.calls.append(len(frame))
        ids = frame.request_id.to_numpy()
        return ServedRows(ids, np.zeros((len(ids), 1)), frame.ts.to_numpy(np.float64))


def test_windows_are_served_in_stretches_each_at_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift, "SERVE_REQUESTS", 8)
    sizes = [3, 6, 0, 5, 1]  # requests per window; window 2 is empty
    window = np.repeat(np.arange(len(sizes)), sizes)
    frame = pd.DataFrame({"request_id": np.arange(len(window)), "window": window})
    edges = [0, 10, 20, 30, 40, 50]
    path = _Path()
    got = list(_served(path, frame, edges))  # type: ignore[arg-type]
    assert [i for i, _ in got] == [0, 1, 2, 3, 4]
    assert path.calls == [3, 6, 6]  # [0], [1, 2], [3, 4]: never more than 8 at once
    for i, rows in got:
        mine = np.isin(rows.request_id, frame.request_id[frame.window == i])
        assert mine.sum() == sizes[i] and (rows.scores[mine] == edges[i + 1]).all()
