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
from vidrec.monitoring.detector import (
    Array,
    BinnedDetector,
    Statistic,
    drifted,
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


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    p_value: float  # NaN: not tested
    distance: float
    drifted: bool
    missing_ratio: float
    out_of_range_ratio: float


@dataclass(frozen=True)
class Assessment:
    status: Status
    requests: float
    features: list[FeatureResult]
    prediction: Statistic = NOT_TESTED
    prediction_drifted: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> why it was not tested

    @property
    def drifting(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


def assess(
    ref: Reference, window: Window, cfg: MonitoringConfig, detector: BinnedDetector
) -> Assessment:
    quality = {n: _quality(window, n) for n in window.features}
    if window.requests < cfg.min_requests:
        nan = float("nan")
        results = [FeatureResult(n, nan, 0.0, False, *quality[n]) for n in sorted(quality)]
        return Assessment("insufficient_data", window.requests, results)
    names, skipped = _testable(ref, window, cfg)
    n_ref = ref.samples or ref.requests
    n_cur = min(round(ref.effective_samples(window.requests, window.seconds)), cfg.max_samples)
    # missing values are one more category: a feature that turns NaN has drifted too
    pairs = [
        pool_sparse(to_samples(np.append(ref.features[n], ref.missing.get(n, 0)), n_ref),
                    to_samples(np.append(window.features[n], window.missing.get(n, 0)), n_cur),
                    cfg.min_expected_count)
        for n in names
    ]  # fmt: skip
    stats = detector.test([r for r, _ in pairs], [c for _, c in pairs])
    flags = drifted([s.p_value for s in stats], cfg.p_value, cfg.correction)
    results = [
        FeatureResult(n, s.p_value, s.distance, f, *quality[n])
        for n, s, f in zip(names, stats, flags, strict=True)
    ]
    r, c = pool_sparse(to_samples(ref.score, n_ref), to_samples(window.score, n_cur),
                       cfg.min_expected_count)  # fmt: skip
    pred = detector.test([r], [c])[0]
    pred_drift = math.isfinite(pred.p_value) and pred.p_value < cfg.p_value
    status: Status = "drift" if any(flags) or pred_drift else "ok"
    return Assessment(status, window.requests, results, pred, pred_drift, skipped)


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


def _quality(window: Window, name: str) -> tuple[float, float]:
    """Missing share, and share outside the training range (first and last bin)."""
    counts = np.asarray(window.features[name], dtype=np.float64)
    finite, missing = float(counts.sum()), float(window.missing.get(name, 0.0))
    missing_ratio = missing / (finite + missing) if finite + missing > 0 else float("nan")
    if len(counts) < 3 or finite <= 0:
        return missing_ratio, float("nan")
    return missing_ratio, float((counts[0] + counts[-1]) / finite)


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
