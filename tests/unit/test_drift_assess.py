"""The drift monitor's pure decisions: sample scaling, multiple-testing correction, one
window's assessment, streaks and the retraining decision; and the Alibi detector itself."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from vidrec.config import MonitoringConfig
from vidrec.monitoring.assess import SCORE, Window, assess, retrain_reason, streaks
from vidrec.monitoring.detector import Array, Statistic, drifted, pool_sparse, to_samples
from vidrec.monitoring.reference import Blocks, Reference

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


class FixedDetector:
    """Fake: every feature gets p = 1, the predictions (tested alone) get `score_p`."""

    name = "fixed"

    def __init__(self, score_p: float) -> None:
        self.score_p = score_p

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        return [Statistic(self.score_p if len(reference) == 1 else 1.0, 0.0)] * len(reference)


def test_the_predictions_are_corrected_with_the_features() -> None:
    w = Window(200, {"a": np.array([0, 100, 60, 40, 0]), "b": np.array([0, 20, 180, 0])},
               missing={"a": 14.0}, score=np.array([10, 80, 10]), seconds=60)  # fmt: skip
    cfg = CFG.model_copy(update={"p_value": 0.01})
    # a, b and the predictions: three looks, each at 0.01 / 3
    quiet = assess(_ref(), w, cfg, FixedDetector(0.004))
    assert quiet.status == "ok" and not quiet.prediction_drifted
    loud = assess(_ref(), w, cfg, FixedDetector(0.003))
    assert loud.status == "drift" and loud.prediction_drifted and loud.drifting == []
    # the reference's shares, missing included (7 of 107): no effect, whatever the test said
    assert {f.feature: f.effect for f in loud.features} == {"a": 0.0, "b": 0.0}


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


def test_category_edges_give_each_code_its_bin_and_unseen_codes_theirs() -> None:
    from vidrec.features.bins import category_edges, count_column, unseen_bins

    edges = category_edges(np.array([351.0, 171.0, 441.0, 171.0]))
    assert edges.tolist() == [170.5, 171, 350.5, 351, 440.5, 441]
    # 373 (a code training never saw) sits between 351 and 441: its own bin, not 441's
    counts = count_column(np.array([171, 351, 441, 373, 373, 999, -1]), edges).counts
    assert counts == [1, 1, 0, 1, 2, 1, 1]
    assert unseen_bins(len(counts)).tolist() == [0, 2, 4, 6]


def test_novelty_is_the_fisher_exact_chance_of_unseen_values_landing_in_the_window() -> None:
    from vidrec.monitoring.detector import novelty_p_value

    unseen = np.array([0, 2])
    ref, cur = np.array([0, 400, 0]), np.array([3, 97, 0])
    # all 3 of the pooled unseen samples fell in the window of 100 (of 500): C(100,3)/C(500,3)
    assert novelty_p_value(ref, cur, unseen) == pytest.approx(100 * 99 * 98 / (500 * 499 * 498))
    assert novelty_p_value(ref, np.array([0, 100, 0]), unseen) == 1.0  # nothing unseen
    assert novelty_p_value(np.array([40, 360, 0]), cur, unseen) > 0.5  # the reference had it


def _categorical_ref() -> Reference:
    # codes 1 and 2 seen (bins 1 and 3); bins 0, 2, 4 hold codes training never saw
    edges = {"c": [0.5, 1.0, 1.5, 2.0]}
    return Reference("1", 0, 400, {"c": np.array([0, 300, 0, 100, 0])}, {}, edges,
                     np.array([10, 80, 10]), samples=400, categorical=frozenset({"c"}))  # fmt: skip


def test_a_few_users_of_an_unseen_category_drift_where_the_chi_square_sees_nothing() -> None:
    from vidrec.monitoring.alibi_detector import ChiSquareDetector

    cfg = CFG.model_copy(update={"max_samples": 2000})
    new = Window(100, {"c": np.array([0, 69, 8, 23, 0])}, score=np.array([10, 80, 10]),
                 seconds=60)  # fmt: skip
    a = assess(_categorical_ref(), new, cfg, ChiSquareDetector())
    assert a.drifting == ["c"]
    assert a.features[0].p_value < 1e-4
    assert a.features[0].out_of_range_ratio == pytest.approx(0.08)  # the unseen share
    # the same 8 samples in a seen category: no novelty, and the chi-square alone is quiet
    seen = Window(100, {"c": np.array([0, 69, 0, 31, 0])}, score=np.array([10, 80, 10]),
                  seconds=60)  # fmt: skip
    quiet = assess(_categorical_ref(), seen, cfg, ChiSquareDetector())
    assert quiet.status == "ok" and quiet.features[0].out_of_range_ratio == 0.0


def test_a_catalogue_feature_counts_no_more_samples_than_distinct_creators() -> None:
    f = {"creator_ctr_28d": np.array([0, 100, 100, 100, 100]), "user_ctr_7d": np.ones(5) * 100}
    ref = Reference("1", 0, 400, f, {}, {}, np.array([10, 80, 10]), samples=400,
                    units={"video": 600, "creator": 30})  # fmt: skip
    assert ref.feature_samples("creator_ctr_28d", 400) == 30
    assert ref.feature_samples("video_ctr_7d", 400) == 400  # fewer users than videos
    assert ref.feature_samples("user_ctr_7d", 400) == 400  # a user feature: not capped
    window = Window(200, {n: np.array(c) for n, c in f.items()}, score=np.array([10, 80, 10]),
                    seconds=60)  # fmt: skip
    det = ThresholdDetector()
    assess(ref, window, CFG, det)
    (ref_c, cur_c), (ref_u, cur_u) = det.seen[:2]
    assert ref_c.sum() == 30 and cur_c.sum() == 30
    assert ref_u.sum() == 400 and cur_u.sum() == 200


def test_effect_size_is_the_binned_ks_distance_or_for_categories_the_tvd() -> None:
    from vidrec.monitoring.detector import effect_size

    ref = np.array([50, 50, 0, 0])
    # half the mass moves two bins right: the CDFs part by 0.5 at bins 0 and 1
    assert effect_size(ref, np.array([0, 50, 50, 0]), False) == pytest.approx(0.5)
    assert effect_size(ref, ref * 7, False) == 0.0  # sample size does not matter
    # categories: the same move is half the mass in other categories, wherever they sit
    assert effect_size(ref, np.array([0, 50, 0, 50]), True) == pytest.approx(0.5)
    assert effect_size(ref, np.array([0, 50, 0, 50]), False) == pytest.approx(0.5)
    assert effect_size(ref, np.array([0, 0, 50, 50]), False) == pytest.approx(1.0)
    assert math.isnan(effect_size(ref, np.zeros(4), True))  # nothing served


def _blocks_ref() -> Reference:
    """Two blocks (served as of 04:00 and 20:00) whose feature `a` is mirrored, and a
    third with no requests."""
    a = np.array([[0, 900, 100, 0], [0, 100, 900, 0], [0, 0, 0, 0]])
    blocks = Blocks(hours=[4, 20, 12], requests=np.array([1000.0, 1000.0, 0.0]),
                    samples=np.array([400.0, 100.0, 0.0]), features={"a": a},
                    missing={"a": np.array([0.0, 100.0, 0.0])},
                    score=np.array([[10, 80, 10], [10, 80, 10], [0, 0, 0]]),
                    input_blocks=np.array([0, 0, 1]))  # fmt: skip
    return Reference("1", 0, 2000, {"a": a.sum(axis=0)}, {"a": 100}, {},
                     np.array([20, 160, 20]), samples=500, inputs=np.arange(3.0)[:, None],
                     input_names=("a",), blocks=blocks)  # fmt: skip


def _hours(**at: float) -> Array:
    out = np.zeros(24)
    for h, n in at.items():
        out[int(h[1:])] = n
    return out


def test_a_window_is_compared_with_the_blocks_nearest_its_hours() -> None:
    ref = _blocks_ref()
    assert ref.blocks is not None
    # 03:xx and 05:xx -> 04:00; 23:xx -> 20:00 (12:00 holds nothing, 00:00 is not a block)
    assert ref.blocks.weights(_hours(h3=1, h5=1)).tolist() == [1.0, 0.0, 0.0]
    assert ref.blocks.weights(_hours(h4=3, h23=1)).tolist() == [0.75, 0.25, 0.0]
    assert ref.blocks.weights(_hours(h12=2, h10=2)).tolist() == [0.5, 0.5, 0.0]  # nearest held
    assert ref.blocks.weights(np.zeros(24)) is None
    morning = ref.at_hours(_hours(h4=10))
    assert morning.samples == 400 and morning.requests == 1000 and morning.blocks is None
    assert morning.features["a"] == pytest.approx([0, 360, 40, 0])
    assert morning.missing["a"] == 0.0 and morning.inputs.ravel().tolist() == [0.0, 1.0]
    assert morning.hours == (4,) and ref.at_hours(_hours(h4=1, h20=1)).hours == (4, 20)
    both = ref.at_hours(_hours(h4=1, h20=1))
    # effective size of an even mixture of 400 and 100 samples: 1 / (0.25/400 + 0.25/100)
    assert both.samples == 320 and both.inputs.shape == (3, 1)
    shares = np.append(both.features["a"], both.missing["a"]) / 320
    assert shares == pytest.approx([0, 0.5 * 0.9 + 0.5 * 0.1 / 1.1, 0.5 * 0.1 + 0.5 * 0.9 / 1.1,
                                    0, 0.5 * 0.1 / 1.1])  # fmt: skip
    assert ref.at_hours(None) is ref


def test_a_window_drifts_from_the_pooled_day_but_not_from_its_own_hours() -> None:
    """Served at 04:00, the window looks like the 04:00 block: no drift. Against every
    block pooled (a window of unknown hours) it differs."""
    from vidrec.monitoring.alibi_detector import ChiSquareDetector

    w = Window(1000, {"a": np.array([0, 890, 110, 0])}, score=np.array([10, 80, 10]),
               seconds=14_400, hours=_hours(h4=1000))  # fmt: skip
    cfg = MonitoringConfig(min_requests=50, exclude_features=())
    assert assess(_blocks_ref(), w, cfg, ChiSquareDetector()).status == "ok"
    pooled = assess(_blocks_ref(), replace(w, hours=None), cfg, ChiSquareDetector())
    assert pooled.status == "drift" and pooled.drifting == ["a"]


def test_the_online_detector_calibrates_on_the_block_of_the_data_end() -> None:
    at_end = _blocks_ref().at_data_end()  # the first block (04:00 here) is the data's end
    assert at_end.hours == (4,) and at_end.samples == 400
    plain = _ref()
    assert plain.at_data_end() is plain


def test_unseen_categories_are_tested_against_the_whole_reference_not_its_hour() -> None:
    """The 04:00 block holds 40 users, the day 2,040, none of an unseen code. Six of 100
    users in a 04:00 window from an unseen market: against 40 that is chance (about
    (100/140)^6), against the 2,040 users training served all day it is not."""
    from vidrec.monitoring.alibi_detector import ChiSquareDetector

    c = np.array([[0, 30, 0, 10, 0], [0, 1500, 0, 500, 0]])
    blocks = Blocks(hours=[4, 20], requests=np.array([40.0, 2000.0]),
                    samples=np.array([40.0, 2000.0]), features={"c": c},
                    missing={"c": np.zeros(2)}, score=np.array([[10, 80, 10]] * 2),
                    input_blocks=np.zeros(0, dtype=np.int64))  # fmt: skip
    ref = Reference("1", 0, 2040, {"c": c.sum(axis=0)}, {}, {"c": [0.5, 1.0, 1.5, 2.0]},
                    np.array([20, 160, 20]), samples=2040, categorical=frozenset({"c"}),
                    blocks=blocks)  # fmt: skip
    w = Window(100, {"c": np.array([0, 70, 6, 24, 0])}, score=np.array([10, 80, 10]),
               seconds=14_400, hours=_hours(h4=100))  # fmt: skip
    cfg = MonitoringConfig(min_requests=50, exclude_features=(), max_samples=5000)
    a = assess(ref, w, cfg, ChiSquareDetector())
    assert a.reference_hours == (4,) and a.drifting == ["c"] and a.features[0].p_value < 1e-6
    # the same six users in a window as large as the day's reference: chance again
    crowd = replace(w, requests=2040, features={"c": np.array([0, 1500, 6, 534, 0])})
    assert assess(ref, crowd, cfg, ChiSquareDetector()).features[0].p_value > 1e-3
