"""Serving metrics: names, units and labels as declared; responses recorded per stage."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import generate_latest

from vidrec.features.bins import FeatureBins, count_column
from vidrec.serving.api import Item, RecommendResponse
from vidrec.serving.metrics import ServingMetrics
from vidrec.serving.routing import cohort


def response(degraded: bool = False) -> RecommendResponse:
    items = [Item(video_id=i, score=0.1 * i, source="ranked", propensity=1.0) for i in range(1, 4)]
    items.append(Item(video_id=99, score=0.5, source="explore", propensity=0.1))
    return RecommendResponse(
        request_id="r",
        ts=1_700_000_000,
        user_id=1,
        variant="challenger",
        model_version="2",
        items=items,
        degraded=degraded,
        reason="TimeoutError" if degraded else None,
        timings_s={} if degraded else {"retrieval": 0.002, "features": 0.003, "ranking": 0.001},
    )


def value(m: ServingMetrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_a_response_is_recorded_by_stage_variant_and_score() -> None:
    m = ServingMetrics()
    m.observe(response(), 0.008, {})
    assert value(m, "vidrec_requests_total", variant="challenger", code="200") == 1
    for stage in ("retrieval", "features", "ranking", "total"):
        assert value(m, "vidrec_request_duration_seconds_count", variant="challenger", stage=stage)
    assert value(m, "vidrec_score_count", variant="challenger") == 3  # explore items excluded
    assert value(m, "vidrec_items_returned_sum", variant="challenger") == 4
    group = cohort(response().user_id)
    assert value(m, "vidrec_impressions_total", variant="challenger", version="2",
                 cohort=group) == 4  # fmt: skip
    text = generate_latest(m.registry).decode()
    assert all(line.startswith(("#", "vidrec_")) for line in text.splitlines() if line)


def test_degraded_responses_and_errors_are_counted_with_their_reason() -> None:
    m = ServingMetrics()
    m.observe(response(degraded=True), 0.02, {})
    m.error("InvalidInput", code=422)
    assert value(m, "vidrec_degraded_responses_total", variant="challenger", reason="TimeoutError")
    assert value(m, "vidrec_errors_total", type="InvalidInput") == 1
    assert value(m, "vidrec_requests_total", variant="none", code="422") == 1
    stage = value(m, "vidrec_request_duration_seconds_count", variant="challenger", stage="ranking")
    assert stage == 0  # a degraded response has no model stages


def test_feature_histograms_use_the_reference_edges_per_version() -> None:
    bins = FeatureBins(["a", "b"], [np.array([0.0, 1.0]), np.array([10.0])])
    x = np.array([[-1.0, 5.0], [0.0, 10.0], [0.5, np.nan], [3.0, 11.0]])
    counts = bins.count(x)
    # a: <=0 gets -1 and 0 (an edge value falls in its own bucket), (0,1] gets 0.5, >1 gets 3
    assert counts["a"].counts == [2, 1, 1] and counts["a"].missing == 0
    assert counts["b"].counts == [2, 1] and counts["b"].missing == 1 and counts["b"].total == 26
    m = ServingMetrics()
    m.features.set_reference("2", bins)
    m.features.add("challenger", "2", counts)
    m.features.add("challenger", "2", counts)

    def bucket(feature: str, le: str) -> float:
        labels = {"variant": "challenger", "version": "2", "feature": feature, "le": le}
        return value(m, "vidrec_feature_value_bucket", **labels)

    assert [bucket("a", le) for le in ("0.0", "1.0", "+Inf")] == [4, 6, 8]  # cumulative
    assert [bucket("b", le) for le in ("10.0", "+Inf")] == [4, 6]
    labels = {"variant": "challenger", "version": "2", "feature": "b"}
    assert value(m, "vidrec_feature_missing_total", **labels) == 2
    assert value(m, "vidrec_feature_value_sum", **labels) == 52


def test_a_loaded_version_exports_its_engagement_series_at_zero() -> None:
    """So `increase()` counts a new challenger's first clicks (a series born above 0 loses
    its first value)."""
    m = ServingMetrics()
    text = generate_latest(m.registry).decode()
    assert 'vidrec_clicks_total{cohort="0",variant="challenger",version="7"}' not in text
    m.declare("7")
    text = generate_latest(m.registry).decode()
    for group in ("0", "31"):
        for name in (
            "vidrec_impressions_total",
            "vidrec_clicks_total",
            "vidrec_watch_seconds_total",
        ):
            assert value(m, name, variant="challenger", version="7", cohort=group) == 0
            assert f'{name}{{cohort="{group}",variant="challenger",version="7"}} 0.0' in text


def test_a_matrix_is_binned_as_each_column_alone() -> None:
    # FeatureBins.count bins every column in one pass; count_column is the rule it follows
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0, 1], x[3, 2] = np.inf, -np.inf
    edges = [np.array([]), np.array([0.0]), np.sort(rng.normal(size=9)), np.array([-1.0, 1.0])]
    counts = FeatureBins(list("abcd"), edges).count(x)
    for j, name in enumerate("abcd"):
        alone = count_column(x[:, j], edges[j])
        assert counts[name].counts == alone.counts and counts[name].missing == alone.missing
        assert counts[name].total == pytest.approx(alone.total)
    empty = FeatureBins(list("abcd"), edges).count(np.empty((0, 4)))
    assert empty["c"].counts == [0] * 10 and empty["c"].missing == 0


def test_model_gauges_show_only_the_versions_served() -> None:
    m = ServingMetrics()
    m.serving({"champion": ("1", 100), "challenger": ("2", 200)})
    assert value(m, "vidrec_model_info", variant="challenger", version="2") == 1
    assert value(m, "vidrec_model_created_timestamp_seconds", variant="challenger") == 200
    # promoted: 2 is the champion, no challenger; 1's series and the challenger's age are gone
    m.serving({"champion": ("2", 200)})
    text = generate_latest(m.registry).decode()
    info = [ln for ln in text.splitlines() if ln.startswith("vidrec_model_info{")]
    assert info == ['vidrec_model_info{variant="champion",version="2"} 1.0']
    created = [ln for ln in text.splitlines() if ln.startswith("vidrec_model_created_")]
    assert created == ['vidrec_model_created_timestamp_seconds{variant="champion"} 200.0']
    m.serving({"champion": ("2", 200), "challenger": ("3", 300)})
    assert value(m, "vidrec_model_created_timestamp_seconds", variant="challenger") == 300


def test_a_retired_version_loses_every_series_of_its_own() -> None:
    """Each rollout retires a version: its histograms and cohort counters must not pile up."""
    m = ServingMetrics()
    bins = FeatureBins(["a"], [np.array([0.0])])
    for version in ("1", "2"):
        m.declare(version)
        m.features.set_reference(version, bins)
        m.features.add("champion", version, bins.count(np.array([[1.0], [np.nan]])))
        m.batch.labels(version, "served").observe(1)
        m.shadow_overlap.labels(version).observe(0.5)
        m.shadow_correlation.labels(version).observe(0.1)
    m.serving({"champion": ("2", 1_700_000_000)})
    m.observe(response(), 0.01, {})  # version "2" served as the challenger
    m.forget("1")
    lines = [ln for ln in generate_latest(m.registry).decode().splitlines()
             if not ln.startswith("#")]  # fmt: skip
    assert not [ln for ln in lines if 'version="1"' in ln]
    # version 2's series, and those without a version, are all still there
    mine = {ln.partition("{")[0] for ln in lines if 'version="2"' in ln}
    assert mine >= {"vidrec_feature_value_bucket", "vidrec_feature_missing_total",
                    "vidrec_impressions_total", "vidrec_clicks_total",
                    "vidrec_model_call_requests_count", "vidrec_shadow_overlap_ratio_count",
                    "vidrec_shadow_rank_correlation_count", "vidrec_model_info"}  # fmt: skip
    assert value(m, "vidrec_requests_total", variant="challenger", code="200") == 1
    assert "1" not in m.features.edges and "2" in m.features.edges
