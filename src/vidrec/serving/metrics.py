"""Every serving metric, declared once: `vidrec_` prefix, base units, fixed label names.

Recorded in the process users scrape (the KServe server's), from the timings and
outcomes each response carries back from the Ray replicas: metrics recorded
inside replica processes would never reach that `/metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vidrec.serving.api import RecommendResponse

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20))
STAGES = ("retrieval", "features", "ranking")


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "vidrec_requests", "Recommendation requests answered", ["variant", "code"], registry=r
        )
        self.latency = Histogram(
            "vidrec_request_duration_seconds",
            "Time per request and stage",
            ["variant", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("vidrec_errors", "Failed requests by type", ["type"], registry=r)
        self.degraded = Counter(
            "vidrec_degraded_responses",
            "Responses served by the popularity fallback",
            ["variant", "reason"],
            registry=r,
        )
        self.candidates = Histogram(
            "vidrec_items_returned",
            "Videos returned per response",
            ["variant"],
            buckets=(1, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.scores = Histogram(
            "vidrec_score", "Ranker scores returned", ["variant"], buckets=SCORE_BUCKETS, registry=r
        )
        self.model_info = Gauge(
            "vidrec_model_info",
            "1 for each loaded model version",
            ["variant", "version"],
            registry=r,
        )
        self.model_created = Gauge(
            "vidrec_model_created_timestamp_seconds",
            "When the serving model was trained (age = time() - this)",
            ["variant"],
            registry=r,
        )

    def observe(self, resp: RecommendResponse, total_s: float) -> None:
        v = resp.variant
        self.requests.labels(v, "200").inc()
        self.latency.labels(v, "total").observe(total_s)
        for stage in STAGES:
            if stage in resp.timings_s:
                self.latency.labels(v, stage).observe(resp.timings_s[stage])
        if resp.degraded:
            self.degraded.labels(v, resp.reason or "unknown").inc()
        self.candidates.labels(v).observe(len(resp.items))
        for item in resp.items:
            if item.source == "ranked":
                self.scores.labels(v).observe(item.score)

    def error(self, kind: str, variant: str = "none", code: int = 500) -> None:
        self.errors.labels(kind).inc()
        self.requests.labels(variant, str(code)).inc()
