"""Every metric the drift monitor exports, declared once (`vidrec_` prefix, base units).

Per feature and variant: p-value, distance, drift flag and drifting streak, data
quality; per variant: the window's request count, whether it was too small to
test, staleness. A window too small to test sets `vidrec_drift_insufficient_data`
and NaN p-values: absence of evidence is exported as such, never as "no drift".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from vidrec.monitoring.assess import SCORE, Assessment
from vidrec.monitoring.detector import OnlineResult

FEATURE = ["variant", "version", "feature"]
MODEL = ["variant", "version"]


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.p_value = Gauge("vidrec_drift_p_value", "Drift test p-value", FEATURE, registry=r)
        self.distance = Gauge(
            "vidrec_drift_distance", "Drift test statistic (chi-square or KS)", FEATURE, registry=r
        )
        self.effect = Gauge(
            "vidrec_drift_effect_size",
            "How far the window is from the reference whatever its size, in [0, 1] (binned KS "
            "distance; total variation for category codes)",
            FEATURE,
            registry=r,
        )
        self.detected = Gauge(
            "vidrec_drift_detected", "1 if the feature drifted (corrected)", FEATURE, registry=r
        )
        self.windows = Gauge(
            "vidrec_drift_windows", "Consecutive windows the feature drifted", FEATURE, registry=r
        )
        self.missing = Gauge(
            "vidrec_feature_missing_ratio", "Share of missing values in the window", FEATURE,
            registry=r,
        )  # fmt: skip
        self.out_of_range = Gauge(
            "vidrec_feature_out_of_range_ratio",
            "Share of values outside the training range in the window",
            FEATURE,
            registry=r,
        )
        self._model(r)
        self._online(r)

    def _model(self, r: CollectorRegistry) -> None:
        self.pred_p = Gauge(
            "vidrec_prediction_drift_p_value", "Score distribution drift p-value", MODEL,
            registry=r,
        )  # fmt: skip
        self.pred_windows = Gauge(
            "vidrec_prediction_drift_windows", "Consecutive windows the scores drifted", MODEL,
            registry=r,
        )  # fmt: skip
        self.requests = Gauge(
            "vidrec_drift_window_requests", "Ranked requests in the last window", MODEL,
            registry=r,
        )  # fmt: skip
        self.insufficient = Gauge(
            "vidrec_drift_insufficient_data",
            "1 if the last window had too few requests to test (not 'no drift')",
            MODEL,
            registry=r,
        )
        self.staleness = Gauge(
            "vidrec_model_staleness_seconds", "Seconds since the model was trained", MODEL,
            registry=r,
        )  # fmt: skip
        self.runs = Counter("vidrec_monitor_runs", "Monitor runs by result", ["result"], registry=r)
        self.retrains = Counter(
            "vidrec_retraining", "Retraining decisions and results", ["result"], registry=r
        )
        self.last_run = Gauge(
            "vidrec_monitor_last_run_timestamp_seconds", "End of the last run", registry=r
        )

    def _online(self, r: CollectorRegistry) -> None:
        self.online_drift = Gauge(
            "vidrec_online_drift_detected",
            "Samples mode: the online detector (CVM) crossed its threshold since calibration",
            MODEL, registry=r)  # fmt: skip
        self.online_ratio = Gauge(
            "vidrec_online_drift_threshold_ratio",
            "Samples mode: largest online test statistic over its threshold (>= 1: drift)",
            MODEL, registry=r)  # fmt: skip
        self.online_seen = Gauge(
            "vidrec_online_drift_samples",
            "Samples mode: requests fed to the online detector since calibration",
            MODEL, registry=r)  # fmt: skip

    def record_online(self, variant: str, version: str, o: OnlineResult) -> None:
        self.online_drift.labels(variant, version).set(float(o.drift))
        self.online_ratio.labels(variant, version).set(o.ratio)
        self.online_seen.labels(variant, version).set(o.seen)

    def record(
        self, variant: str, version: str, a: Assessment, streak: dict[str, int], age_s: float
    ) -> None:
        for f in a.features:
            key = (variant, version, f.feature)
            self.p_value.labels(*key).set(f.p_value)
            self.distance.labels(*key).set(f.distance)
            self.effect.labels(*key).set(f.effect)
            self.detected.labels(*key).set(float(f.drifted))
            self.windows.labels(*key).set(streak.get(f.feature, 0))
            self.missing.labels(*key).set(f.missing_ratio)
            self.out_of_range.labels(*key).set(f.out_of_range_ratio)
        self.pred_p.labels(variant, version).set(a.prediction.p_value)
        self.pred_windows.labels(variant, version).set(streak.get(SCORE, 0))
        self.requests.labels(variant, version).set(a.requests)
        self.insufficient.labels(variant, version).set(float(a.status == "insufficient_data"))
        self.staleness.labels(variant, version).set(age_s)
