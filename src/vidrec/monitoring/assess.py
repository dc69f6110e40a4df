"""Pure decisions of the drift monitor: one window against a reference, streaks of drifting
windows, and whether to retrain. No I/O here: the monitor feeds it, tests table-drive it.

Too few requests in a window is `insufficient_data`, never "no drift": nothing is
tested, p-values are NaN and streaks hold (neither grow nor reset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vidrec.config import MonitoringConfig
from vidrec.features.bins import unseen_bins
from vidrec.monitoring.detector import (
    Array,
    BinnedDetector,
    SampleDetector,
    Statistic,
    drifted,
    effect_size,
    novelty_p_value,
    pool_sparse,
    to_samples,
)
from vidrec.monitoring.reference import Reference

SCORE = "__score__"  # the streak key of prediction drift
NOT_TESTED = Statistic(float("nan"), 0.0)

Status = Literal["ok", "drift", "insufficient_data"]


@dataclass(frozen=True)
class Window:
    """What serving counted over one window (increases of the histograms)."""

    requests: float  # requests that reached the ranker
    features: dict[str, Array]  # counts per bin, not cumulative
    missing: dict[str, float] = field(default_factory=dict)
    score: Array = field(default_factory=lambda: np.zeros(0))
    seconds: float = field(kw_only=True)  # its length: sets its effective sample size
    # samples mode: feature -> logged values, one per user (tested on values, not bins)
    samples: dict[str, Array] | None = field(default=None, kw_only=True)
    # requests per hour of day their features were served as of (None: unknown, the
    # reference's every block is the baseline)
    hours: Array | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    p_value: float  # NaN: not tested
    distance: float
    drifted: bool
    missing_ratio: float
    out_of_range_ratio: float
    # effect size in [0, 1], whatever the sample size (`detector.effect_size`; the KS
    # distance for features tested on values); NaN: not tested
    effect: float = float("nan")


@dataclass(frozen=True)
class Assessment:
    status: Status
    requests: float
    features: list[FeatureResult]
    prediction: Statistic = NOT_TESTED
    prediction_drifted: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> why it was not tested
    on_values: tuple[str, ...] = ()  # features tested on logged values (samples mode)
    reference_hours: tuple[int, ...] = ()  # the reference blocks compared with (hours of day)

    @property
    def drifting(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


def assess(
    ref: Reference,
    window: Window,
    cfg: MonitoringConfig,
    detector: BinnedDetector,
    sample_detector: SampleDetector | None = None,
) -> Assessment:
    """Every testable feature against the reference (its blocks nearest the window's hours
    of day), corrected together: on logged values by `sample_detector` where the window
    has them (samples mode), else on bins."""
    # a category training never saw is unseen at every hour of day: the novelty test counts
    # the users of the whole reference, not only those of the blocks nearest the window
    n_all = ref.samples or ref.requests
    ref = ref.at_hours(window.hours)
    quality = {n: _quality(window, n, n in ref.categorical) for n in window.features}
    if window.requests < cfg.min_requests:
        nan = float("nan")
        results = [FeatureResult(n, nan, 0.0, False, *quality[n]) for n in sorted(quality)]
        return Assessment("insufficient_data", window.requests, results)
    names, skipped = _testable(ref, window, cfg)
    n_ref = ref.samples or ref.requests
    n_cur = min(round(ref.effective_samples(window.requests, window.seconds)), cfg.max_samples)
    on_values = _on_values(ref, window, names) if sample_detector is not None else []
    on_bins = [n for n in names if n not in on_values]
    # missing values are one more category: a feature that turns NaN has drifted too
    scaled = {
        n: (to_samples(np.append(ref.features[n], ref.missing.get(n, 0)),
                       ref.feature_samples(n, n_ref)),
            to_samples(np.append(window.features[n], window.missing.get(n, 0)),
                       ref.feature_samples(n, n_cur)))
        for n in on_bins
    }  # fmt: skip
    pairs = [pool_sparse(r, c, cfg.min_expected_count) for r, c in scaled.values()]
    by_name = dict(zip(on_bins, detector.test([r for r, _ in pairs], [c for _, c in pairs]),
                       strict=True))  # fmt: skip
    for n in ref.categorical.intersection(on_bins):
        whole = to_samples(np.append(ref.features[n], ref.missing.get(n, 0)),
                           ref.feature_samples(n, max(n_all, n_ref)))  # fmt: skip
        by_name[n] = _with_novelty(by_name[n], whole, scaled[n][1],
                                   unseen_bins(len(ref.features[n])))  # fmt: skip
    if on_values:
        assert sample_detector is not None and window.samples is not None
        ref_v = [with_missing(ref.input(n)) for n in on_values]
        cur_v = [with_missing(window.samples[n]) for n in on_values]
        by_name.update(zip(on_values, sample_detector.test(ref_v, cur_v), strict=True))
    stats = [by_name[n] for n in names]
    r, c = pool_sparse(to_samples(ref.score, n_ref), to_samples(window.score, n_cur),
                       cfg.min_expected_count)  # fmt: skip
    pred = detector.test([r], [c])[0]
    # the predictions are one more look: corrected with the features, one level per window
    *flags, pred_drift = drifted([*(s.p_value for s in stats), pred.p_value], cfg.p_value,
                                 cfg.correction)  # fmt: skip
    effects = {n: _effect(ref, window, n) for n in on_bins}
    effects.update({n: by_name[n].distance for n in on_values})
    results = [
        FeatureResult(n, s.p_value, s.distance, f, *quality[n], effect=effects[n])
        for n, s, f in zip(names, stats, flags, strict=True)
    ]
    status: Status = "drift" if any(flags) or pred_drift else "ok"
    return Assessment(status, window.requests, results, pred, pred_drift, skipped,
                      tuple(on_values), ref.hours)  # fmt: skip


def _with_novelty(chi: Statistic, ref: Array, cur: Array, unseen: Array) -> Statistic:
    """A categorical feature's p-value: the smaller of the chi-square's and the novelty
    test's (unseen categories), doubled for the two looks (Bonferroni within the feature)."""
    novel = novelty_p_value(ref, cur, unseen)
    p = chi.p_value if math.isfinite(chi.p_value) else 1.0
    return Statistic(min(1.0, 2 * min(p, novel)), chi.distance)


def _effect(ref: Reference, window: Window, name: str) -> float:
    """`effect_size` of a binned feature, missing values as one more bin below the rest
    (samples mode logs them as -1)."""
    r = np.insert(np.asarray(ref.features[name], dtype=np.float64), 0, ref.missing.get(name, 0))
    c = np.insert(np.asarray(window.features[name], dtype=np.float64), 0,
                  window.missing.get(name, 0))  # fmt: skip
    return effect_size(r, c, name in ref.categorical)


def _on_values(ref: Reference, window: Window, names: list[str]) -> list[str]:
    """Features tested on logged values: the window's samples (samples mode gives it those
    of `sample_features`) that the reference logged too."""
    if window.samples is None:
        return []
    return [n for n in names if n in window.samples and n in ref.input_names]


def with_missing(values: Array) -> Array:
    """Logged values with missing as -1, below every value of a non-negative feature: a
    feature that turns NaN shifts its distribution like any other drift."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-1.0)


def _testable(
    ref: Reference, window: Window, cfg: MonitoringConfig
) -> tuple[list[str], dict[str, str]]:
    names, skipped = [], {}
    for n in sorted(ref.features):
        if n in cfg.exclude_features:
            skipped[n] = "excluded by monitoring.exclude_features"
        elif n not in window.features:
            skipped[n] = "not served in this window"
        elif len(window.features[n]) != len(ref.features[n]):
            skipped[n] = (
                f"{len(window.features[n])} serving bins vs {len(ref.features[n])} reference bins"
            )
        else:
            names.append(n)
    return names, skipped


def _quality(window: Window, name: str, categorical: bool) -> tuple[float, float]:
    """Missing share, and share outside the training range (first and last bin) or, for a
    category code, share of categories training never saw."""
    counts = np.asarray(window.features[name], dtype=np.float64)
    finite, missing = float(counts.sum()), float(window.missing.get(name, 0.0))
    missing_ratio = missing / (finite + missing) if finite + missing > 0 else float("nan")
    if len(counts) < 3 or finite <= 0:
        return missing_ratio, float("nan")
    outside = counts[unseen_bins(len(counts))].sum() if categorical else counts[0] + counts[-1]
    return missing_ratio, float(outside / finite)


def streaks(prev: dict[str, int], a: Assessment) -> dict[str, int]:
    """Consecutive drifting windows per feature (and SCORE for the predictions)."""
    if a.status == "insufficient_data":
        return dict(prev)
    out = {f.feature: prev.get(f.feature, 0) + 1 if f.drifted else 0 for f in a.features}
    out[SCORE] = prev.get(SCORE, 0) + 1 if a.prediction_drifted else 0
    return out


def retrain_reason(
    streak: dict[str, int],
    cfg: MonitoringConfig,
    now: float,
    last_started: float | None,
    running: bool,
) -> tuple[bool, str]:
    """(start a retraining?, why or why not) for the champion's streaks."""
    sustained = sorted(f for f, n in streak.items() if n >= cfg.sustained_windows)
    if not sustained:
        return False, "no sustained drift"
    what = ", ".join("predictions" if f == SCORE else f for f in sustained)
    if not cfg.retrain:
        return False, f"sustained drift ({what}); retraining is off (monitoring.retrain)"
    if running:
        return False, f"sustained drift ({what}); a retraining is already running"
    if last_started is not None and now - last_started < cfg.retrain_cooldown_s:
        return False, f"sustained drift ({what}); in cooldown since {last_started:.0f}"
    return True, f"sustained drift over {cfg.sustained_windows} windows: {what}"
