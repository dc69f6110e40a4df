"""Serving metrics: names, units and labels as declared; responses recorded per stage."""

from __future__ import annotations

from prometheus_client import generate_latest

from vidrec.serving.api import Item, RecommendResponse
from vidrec.serving.metrics import ServingMetrics


def response(degraded: bool = False) -> RecommendResponse:
    items = [Item(video_id=i, score=0.1 * i, source="ranked", propensity=1.0) for i in range(1, 4)]
    items.append(Item(video_id=99, score=0.5, source="explore", propensity=0.1))
    return RecommendResponse(
        request_id="r",
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
    m.observe(response(), 0.008)
    assert value(m, "vidrec_requests_total", variant="challenger", code="200") == 1
    for stage in ("retrieval", "features", "ranking", "total"):
        assert value(m, "vidrec_request_duration_seconds_count", variant="challenger", stage=stage)
    assert value(m, "vidrec_score_count", variant="challenger") == 3  # explore items excluded
    assert value(m, "vidrec_items_returned_sum", variant="challenger") == 4
    text = generate_latest(m.registry).decode()
    assert all(line.startswith(("#", "vidrec_")) for line in text.splitlines() if line)


def test_degraded_responses_and_errors_are_counted_with_their_reason() -> None:
    m = ServingMetrics()
    m.observe(response(degraded=True), 0.02)
    m.error("InvalidInput", code=422)
    assert value(m, "vidrec_degraded_responses_total", variant="challenger", reason="TimeoutError")
    assert value(m, "vidrec_errors_total", type="InvalidInput") == 1
    assert value(m, "vidrec_requests_total", variant="none", code="422") == 1
    stage = value(m, "vidrec_request_duration_seconds_count", variant="challenger", stage="ranking")
    assert stage == 0  # a degraded response has no model stages
