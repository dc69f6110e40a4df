"""The drift monitor's pure decisions: sample scaling, multiple-testing correction, one
window's assessment, streaks and the retraining decision; and the Alibi detector itself."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from vidrec.config import MonitoringConfig
from vidrec.monitoring.assess import SCORE, Window, assess, retrain_reason, streaks
from vidrec.monitoring.detector import Array, Statistic, drifted, pool_sparse, to_samples
from vidrec.monitoring.reference import Reference

CFG = MonitoringConfig(min_requests=50, max_samples=500, sustained_windows=2,
                       exclude_features=("hour",), retrain_cooldown_s=100)  # fmt: skip


def test_to_samples_keeps_proportions_and_total() -> None:
    out = to_samples(np.array([1.0, 1.0, 1.0]), 10)
    assert out.sum() == 10 and sorted(out.tolist()) == [3, 3, 4]
    assert to_samples(np.array([2.5, 7.5]), 4).tolist() == [1, 3]
    assert to_samples(np.array([0.0, 0.0]), 5).tolist() == [0, 0]
    assert to_samples(np.array([-1.0, 3.0]), 6).tolist() == [0, 6]  # dips clipped


def test_pool_sparse_merges_neighbours_until_each_group_expects_enough() -> None:
    # smaller side 14 of 139: a bin expects about a tenth of its pooled count
    ref, cur = pool_sparse(np.array([60, 0, 20, 5, 5, 40]), np.array([5, 0, 3, 1, 1, 4]), 5.0)
    # 6.5 | empty dropped | 2.3 + 0.6 + 0.6 + 4.4
    assert ref.tolist() == [60, 70] and cur.tolist() == [5, 9]
    ref, cur = pool_sparse(np.array([50, 50]), np.array([50, 50]), 5.0)
    assert ref.tolist() == [50, 50]  # dense bins untouched
    ref, cur = pool_sparse(np.array([1, 1]), np.array([1, 0]), 5.0)
    assert ref.tolist() == [2] and cur.tolist() == [1]  # too sparse overall: one group


def test_effective_samples_divide_by_requests_per_user_at_that_window_length() -> None:
    ref = Reference("1", 0, 100, {}, {}, {}, np.zeros(1), samples=40,
                    requests_per_user={60: 1.0, 3600: 2.0, 86_400: 4.0})  # fmt: skip
    assert ref.effective_samples(300, 3600) == pytest.approx(150)
    assert ref.effective_samples(300, 10) == pytest.approx(300)  # below the shortest: clamped
    mid = ref.effective_samples(300, math.sqrt(60 * 3600))  # interpolated in log length
    assert mid == pytest.approx(200)
    assert Reference("1", 0, 100, {}, {}, {}, np.zeros(1)).effective_samples(300, 60) == 300


def test_bonferroni_divides_alpha_by_the_tested_features() -> None:
    assert drifted([0.004, 0.02, math.nan], 0.01, "bonferroni") == [True, False, False]
    assert drifted([0.006, 0.5], 0.01, "bonferroni") == [False, False]  # 0.006 > 0.01/2


def test_benjamini_hochberg_rejects_up_to_the_largest_passing_rank() -> None:
    # sorted p: 0.001 <= 0.05*1/4, 0.03 > 0.05*2/4 but 0.035 <= 0.05*3/4: ranks 1-3 rejected
    assert drifted([0.035, 0.001, 0.9, 0.03], 0.05, "fdr") == [True, True, False, True]
    assert drifted([0.2, 0.3], 0.05, "fdr") == [False, False]
    assert drifted([math.nan], 0.05, "fdr") == [False]


class ThresholdDetector:
    """Fake: p = 0.0 when the histograms' largest bins differ, else 1.0 (pure logic only)."""

    name = "fake"

    def __init__(self) -> None:
        self.seen: list[tuple[Array, Array]] = []

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        self.seen.extend(zip(reference, current, strict=True))
        return [
            Statistic(0.0 if np.argmax(r) != np.argmax(c) else 1.0, 1.0)
            for r, c in zip(reference, current, strict=True)
        ]


def _ref() -> Reference:
    f = {"a": np.array([0, 50, 30, 20, 0]), "b": np.array([0, 10, 90, 0]),
         "hour": np.array([5, 5])}  # fmt: skip
    return Reference("1", 0, 100, f, {"a": 7}, {}, np.array([10, 80, 10]))


def test_a_small_window_is_insufficient_data_not_no_drift() -> None:
    w = Window(10, {"a": np.array([0, 0, 0, 10, 0])}, seconds=60)
    a = assess(_ref(), w, CFG, ThresholdDetector())
    assert a.status == "insufficient_data"
    assert all(math.isnan(f.p_value) for f in a.features)
    assert streaks({"a": 1}, a) == {"a": 1}  # held, neither grown nor reset


def test_assess_flags_the_shifted_feature_and_counts_missing_as_a_category() -> None:
    w = Window(
        200,
        {"a": np.array([0, 5, 10, 80, 5]), "b": np.array([0, 10, 90, 0]), "hour": np.ones(2)},
        missing={"a": 25.0},
        score=np.array([10, 80, 10]),
        seconds=60,
    )
    det = ThresholdDetector()
    a = assess(_ref(), w, CFG, det)
    assert a.status == "drift" and a.drifting == ["a"] and not a.prediction_drifted
    assert a.skipped == {"hour": "excluded by monitoring.exclude_features"}
    ref_a, cur_a = det.seen[0]
    assert ref_a.sum() == 100 and cur_a.sum() == 200  # each scaled to its request count
    # missing is the last category (40 of 200); the empty first bin is dropped and the sparse
    # last range bin (8, expecting under 5 on the reference side) pooled into it
    assert cur_a.tolist() == [8, 16, 128, 8 + 40]
    res = {f.feature: f for f in a.features}
    assert res["a"].missing_ratio == pytest.approx(25 / 125)
    assert res["a"].out_of_range_ratio == pytest.approx(5 / 100)  # first + last bin


def test_bins_that_do_not_match_the_reference_are_skipped_with_a_reason() -> None:
    w = Window(100, {"a": np.ones(3), "b": np.array([0, 10, 90, 0])}, score=np.array([1, 8, 1]),
               seconds=60)  # fmt: skip
    a = assess(_ref(), w, CFG, ThresholdDetector())
    assert "3 serving bins vs 5 reference bins" in a.skipped["a"]
    assert a.status == "ok"


def test_streaks_grow_while_drifting_and_reset_when_not() -> None:
    w_drift = Window(200, {"a": np.array([0, 0, 0, 9, 0])}, score=np.array([80, 10, 10]),
                     seconds=60)  # fmt: skip
    w_ok = Window(200, {"a": np.array([0, 9, 0, 0, 0])}, score=np.array([10, 80, 10]),
                  seconds=60)  # fmt: skip
    det = ThresholdDetector()
    s = streaks({}, assess(_ref(), w_drift, CFG, det))
    s = streaks(s, assess(_ref(), w_drift, CFG, det))
    assert s == {"a": 2, SCORE: 2}
    assert streaks(s, assess(_ref(), w_ok, CFG, det)) == {"a": 0, SCORE: 0}


@pytest.mark.parametrize(
    ("streak", "running", "last", "start", "why"),
    [
        ({"a": 1}, False, None, False, "no sustained drift"),
        ({"a": 2}, False, None, True, "sustained drift over 2 windows: a"),
        ({SCORE: 3}, False, None, True, "predictions"),
        ({"a": 2}, True, None, False, "already running"),
        ({"a": 2}, False, 950.0, False, "cooldown"),
        ({"a": 2}, False, 850.0, True, "sustained drift"),
    ],
)
def test_retrain_decision(
    streak: dict[str, int], running: bool, last: float | None, start: bool, why: str
) -> None:
    go, reason = retrain_reason(streak, CFG, 1000.0, last, running)
    assert go is start and why in reason


def test_retraining_off_is_said() -> None:
    cfg = CFG.model_copy(update={"retrain": False})
    assert retrain_reason({"a": 5}, cfg, 0.0, None, False) == (
        False,
        "sustained drift (a); retraining is off (monitoring.retrain)",
    )


def test_alibi_chi_square_tells_a_shift_from_noise() -> None:
    from vidrec.monitoring.alibi_detector import ChiSquareDetector

    rng = np.random.default_rng(0)
    ref = np.bincount(rng.integers(0, 8, 2000), minlength=10)  # two bins never used
    same = np.bincount(rng.integers(0, 8, 400), minlength=10)
    shifted = np.bincount(rng.integers(0, 8, 400) // 2, minlength=10)
    same_r, shift_r, empty_r = ChiSquareDetector().test(
        [ref, ref, ref], [same, shifted, np.zeros(10, dtype=int)]
    )
    assert same_r.p_value > 0.05
    assert shift_r.p_value < 1e-6 and shift_r.distance > same_r.distance
    assert math.isnan(empty_r.p_value)  # nothing served: not tested, not "no drift"
