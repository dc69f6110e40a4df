"""Read one serving window from Prometheus: which versions serve, and the increases of
their feature, missing-value and score histograms over the window."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from vidrec.features.bins import SCORE_FEATURE
from vidrec.features.hours import HOUR_FEATURE
from vidrec.monitoring.assess import Window
from vidrec.monitoring.detector import Array
from vidrec.monitoring.prometheus import MetricsProvider, Sample


def serving_versions(provider: MetricsProvider) -> list[tuple[str, str]]:
    """(variant, version) of every loaded model, from the server's `vidrec_model_info`."""
    got = provider.query("max by (variant, version) (vidrec_model_info) == 1")
    return sorted({(s.labels["variant"], s.labels["version"]) for s in got})


def read_window(provider: MetricsProvider, variant: str, version: str, window_s: int) -> Window:
    sel = f'variant="{variant}",version="{version}"'
    w = f"[{window_s}s]"
    buckets = provider.query(
        f"sum by (feature, le) (increase(vidrec_feature_value_bucket{{{sel}}}{w}))"
    )
    missing = provider.query(
        f"sum by (feature) (increase(vidrec_feature_missing_total{{{sel}}}{w}))"
    )
    requests = provider.query(
        f'sum(increase(vidrec_request_duration_seconds_count{{variant="{variant}",'
        f'stage="ranking"}}{w}))'
    )
    per_feature: dict[str, list[Sample]] = defaultdict(list)
    for s in buckets:
        per_feature[s.labels["feature"]].append(s)
    features = {f: bins(ss) for f, ss in per_feature.items()}
    # the ranker's output over every candidate rides along as the "score" feature
    score = features.pop(SCORE_FEATURE, np.zeros(0))
    hours = features.pop(HOUR_FEATURE, None)  # requests by their features' hour of day
    return Window(
        requests=sum(s.value for s in requests),
        features=features,
        missing={s.labels["feature"]: s.value for s in missing if s.labels["feature"] in features},
        score=score,
        seconds=window_s,
        hours=hours,
    )


def bins(cumulative: list[Sample]) -> Array:
    """Per-bin counts from a histogram's cumulative `le` buckets. increase() extrapolates,
    so a cumulative series can dip slightly: differences are clipped at zero."""
    if not cumulative:
        return np.zeros(0)
    ordered = sorted(cumulative, key=lambda s: _le(s.labels["le"]))
    values = np.array([max(s.value, 0.0) if math.isfinite(s.value) else 0.0 for s in ordered])
    return np.clip(np.diff(values, prepend=0.0), 0, None)


def _le(le: str) -> float:
    return math.inf if le == "+Inf" else float(le)
