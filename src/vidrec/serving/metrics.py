"""Every serving metric, declared once: `vidrec_` prefix, base units, fixed label names.

Recorded in the process users scrape (the KServe server's), from the timings,
feature bins and outcomes each response carries back from the Ray replicas:
metrics recorded inside replica processes would never reach that `/metrics`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from vidrec.config import COHORTS
from vidrec.features.bins import SCORE_EDGES, SCORE_FEATURE, BinCounts, FeatureBins
from vidrec.features.hours import HOUR_EDGES, HOUR_FEATURE
from vidrec.serving.api import RecommendResponse
from vidrec.serving.routing import cohort

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)
GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RATIO_BUCKETS = tuple(round(0.1 * i, 1) for i in range(11))
CORRELATION_BUCKETS = tuple(round(-1 + 0.2 * i, 1) for i in range(11))
STAGES = ("retrieval", "features", "ranking")
VARIANTS = ("champion", "challenger")  # of served requests (shadow calls are not served)


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
            "vidrec_score", "Ranker scores returned", ["variant"], buckets=SCORE_EDGES, registry=r
        )
        self.features = FeatureHistograms()
        r.register(self.features)
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
        self.gc_pauses = Histogram(
            "vidrec_gc_pause_seconds",
            "Pauses of the serving process's cyclic garbage collector, by generation",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "vidrec_model_call_requests",
            "Requests per call to a version's app (served: more than 1 while the app is busy; "
            "shadow: calls that wait to fill up)",
            ["version", "call"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.versions_loaded = Gauge(
            "vidrec_model_versions_loaded", "Model versions whose apps are running", registry=r
        )
        self.version_changes = Counter(
            "vidrec_model_version_changes",
            "Versions loaded or retired as the route table names them, loads that failed, "
            "and named versions found waiting for room (no_room)",
            ["event"],
            registry=r,
        )
        self.route_table_invalid = Gauge(
            "vidrec_route_table_invalid",
            "1 while the stored route table cannot be read: the last valid one is in force",
            registry=r,
        )
        self.served: dict[str, tuple[str, int]] = {}  # what the model gauges show now
        self._shadow(r)
        self._feedback(r)

    def _shadow(self, r: CollectorRegistry) -> None:
        self.shadow = Counter(
            "vidrec_shadow_requests",
            "Shadow calls to the challenger by outcome (compared, degraded, dropped, failed)",
            ["outcome"],
            registry=r,
        )
        self.shadow_overlap = Histogram(
            "vidrec_shadow_overlap_ratio",
            "Share of the served videos the challenger would also have shown (overlap@k)",
            ["version"],
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.shadow_correlation = Histogram(
            "vidrec_shadow_rank_correlation",
            "Kendall tau of the shared videos' ranks, served vs challenger",
            ["version"],
            buckets=CORRELATION_BUCKETS,
            registry=r,
        )

    def _feedback(self, r: CollectorRegistry) -> None:
        labels = ["variant", "version", "cohort"]  # cohort: routing.cohort(user)
        self.impressions = Counter("vidrec_impressions", "Videos shown", labels, registry=r)
        self.clicks = Counter("vidrec_clicks", "Clicks reported by feedback", labels, registry=r)
        self.watch = Counter(
            "vidrec_watch_seconds", "Watch time reported by feedback", labels, registry=r
        )
        self.feedback = Counter(
            "vidrec_feedback_outcomes",
            "Feedback outcomes by result (joined, or why rejected)",
            ["result"],
            registry=r,
        )
        self.log_rejected = Counter(
            "vidrec_log_rows_rejected",
            "Impression, request or watch log rows the log's schema could not hold (kept in "
            "<log>/<table>.rejected.jsonl)",
            ["table"],
            registry=r,
        )
        self.log_dropped = Counter(
            "vidrec_log_rows_dropped",
            "Log rows let go while the log could not be written (beyond the backlog kept "
            "for the retry)",
            ["table"],
            registry=r,
        )
        self.log_write_failing = Gauge(
            "vidrec_log_write_failing",
            "1 while the impression log cannot be written (the server's log says why)",
            registry=r,
        )

    def serving(self, served: dict[str, tuple[str, int]]) -> None:
        """The model gauges for `served` (variant -> version, its creation time) alone: a
        variant no longer served loses its series, or its model age would keep growing into
        a stale-model alert. Series are removed and set, never cleared first: a scrape in
        between would see no model at all."""
        for variant, (version, _) in self.served.items():
            if served.get(variant, ("", 0))[0] != version:
                self.model_info.remove(variant, version)
            if variant not in served:
                self.model_created.remove(variant)
        for variant, (version, created) in served.items():
            self.model_info.labels(variant, version).set(1)
            self.model_created.labels(variant).set(created)
        self.served = dict(served)

    def declare(self, version: str) -> None:
        """Export a loaded version's per-variant series at 0 before its first request.

        A counter series that appears mid-window with its first value already above 0 loses
        that value to `increase()`: a challenger's sparse per-cohort engagement series would
        be undercounted against the champion's old ones (a first demo run rolled back an
        equal model on it)."""
        for variant in VARIANTS:
            self.requests.labels(variant, "200")
            self.latency.labels(variant, "total")
            for group in map(str, range(COHORTS)):
                for counter in (self.impressions, self.clicks, self.watch):
                    counter.labels(variant, version, group)

    def forget(self, version: str) -> None:
        """Drop a retired version's series. Every rollout loads a version and retires one:
        kept, a long-running server would export each one's feature histograms and cohort
        counters forever (Prometheus keeps their history; nothing reads them live). Its
        model gauges are `serving`'s: gone once it was no longer served."""
        labelled = (self.impressions, self.clicks, self.watch, self.batch,
                    self.shadow_overlap, self.shadow_correlation)  # fmt: skip
        for metric in labelled:
            metric.remove_by_labels({"version": version})
        self.features.forget(version)

    def observe(self, resp: RecommendResponse, total_s: float, bins: dict[str, BinCounts]) -> None:
        v = resp.variant
        self.requests.labels(v, "200").inc()
        self.latency.labels(v, "total").observe(total_s)
        self.observe_model(resp, bins)
        group = cohort(resp.user_id)
        self.impressions.labels(v, resp.model_version, group).inc(len(resp.items))

    def observe_model(self, resp: RecommendResponse, bins: dict[str, BinCounts]) -> None:
        """What a model call produced (served or shadow): stage times, scores, features."""
        v = resp.variant
        for stage in STAGES:
            if stage in resp.timings_s:
                self.latency.labels(v, stage).observe(resp.timings_s[stage])
        if resp.degraded:
            self.degraded.labels(v, resp.reason or "unknown").inc()
        self.candidates.labels(v).observe(len(resp.items))
        for item in resp.items:
            if item.source == "ranked":
                self.scores.labels(v).observe(item.score)
        self.features.add(v, resp.model_version, bins)

    def error(self, kind: str, variant: str = "none", code: int = 500) -> None:
        self.errors.labels(kind).inc()
        self.requests.labels(variant, str(code)).inc()


class FeatureHistograms(Collector):
    """`vidrec_feature_value` histograms whose buckets are each model version's reference
    quantiles (they differ per feature and version, which prometheus_client's Histogram
    cannot do), and `vidrec_feature_missing` counts."""

    def __init__(self) -> None:
        self.edges: dict[str, FeatureBins] = {}  # version -> its reference edges
        self.counts: dict[tuple[str, str, str], list[float]] = {}  # variant, version, feature
        self.sums: dict[tuple[str, str, str], float] = {}
        self.missing: dict[tuple[str, str, str], int] = {}
        # requests add on the event loop, a retired version is forgotten on the thread that
        # follows the route table, and a scrape reads all three tables in between
        self.lock = threading.Lock()

    def set_reference(self, version: str, bins: FeatureBins) -> None:
        self.edges[version] = bins

    def add(self, variant: str, version: str, bins: dict[str, BinCounts]) -> None:
        with self.lock:
            for name, b in bins.items():
                key = (variant, version, name)
                acc = self.counts.setdefault(key, [0.0] * len(b.counts))
                for i, c in enumerate(b.counts):
                    acc[i] += c
                self.sums[key] = self.sums.get(key, 0.0) + b.total
                self.missing[key] = self.missing.get(key, 0) + b.missing

    def forget(self, version: str) -> None:
        with self.lock:
            self.edges.pop(version, None)
            for table in (self.counts, self.sums, self.missing):
                for key in [k for k in table if k[1] == version]:
                    del table[key]

    def collect(self) -> Iterator[Any]:
        hist = HistogramMetricFamily(
            "vidrec_feature_value",
            "Model input values in the training reference's quantile bins",
            labels=["variant", "version", "feature"],
        )
        missing = CounterMetricFamily(
            "vidrec_feature_missing",
            "Model input values missing (NaN) at serving",
            labels=["variant", "version", "feature"],
        )
        with self.lock:
            rows = [(k, list(c), self.sums[k], self.missing[k]) for k, c in self.counts.items()]
        for key, counts, total, absent in rows:
            edges = self._edges(key[1], key[2], len(counts))
            cumulative, running = [], 0.0
            for le, c in zip([*map(str, edges), "+Inf"], counts, strict=True):
                running += c
                cumulative.append((le, running))
            hist.add_metric(list(key), cumulative, total)
            missing.add_metric(list(key), absent)
        yield hist
        yield missing

    def _edges(self, version: str, feature: str, n: int) -> list[float]:
        if feature == SCORE_FEATURE:
            return list(SCORE_EDGES)
        if feature == HOUR_FEATURE:
            return list(HOUR_EDGES)
        ref = self.edges.get(version)
        if ref is not None and feature in ref.names:
            edges = ref.edges[ref.names.index(feature)]
            if len(edges) == n - 1:
                return [float(e) for e in edges]
        return [float(i) for i in range(n - 1)]  # unknown reference: bins by index
