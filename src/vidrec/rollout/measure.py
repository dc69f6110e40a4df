"""The analysis' numbers, read from Prometheus through `MetricsProvider`.

Latency and errors are per variant over the policy's window; engagement is per model
version and user cohort since the canary began (evidence accumulates across steps), with
each cohort's engagement over `baseline_s` before the canary (any version) beside it;
shadow numbers cover the window. An unreachable Prometheus makes the whole analysis
inconclusive. A series that does not exist is no data (zero counts), never a pass: the
checks demand minimum counts.
"""

from __future__ import annotations

import dataclasses

from vidrec.errors import NotReady
from vidrec.monitoring.prometheus import MetricsProvider
from vidrec.rollout.analysis import Cohort, Measurements, ShadowStats, VariantStats
from vidrec.rollout.state import Rollout

DRIFT_ALERTS = "VidrecFeatureDrift|VidrecPredictionDrift"


class PrometheusMeasurer:
    def __init__(self, provider: MetricsProvider) -> None:
        self.provider = provider

    def measure(self, rollout: Rollout, now: float) -> Measurements:
        try:
            return self._measure(rollout, now)
        except NotReady as exc:
            return Measurements(unavailable=exc.message)

    def _measure(self, ro: Rollout, now: float) -> Measurements:
        version, a = ro.spec.version, ro.spec.policy.analysis
        loaded = self._sum(f'vidrec_model_info{{variant="challenger", version="{version}"}}')
        drift = self._drift(version)
        if not loaded:
            return Measurements(loaded=False, drift_alerts=drift)
        w = _dur(a.window_s)
        if ro.status.phase == "shadow":
            return Measurements(shadow=self._shadow(version, w), drift_alerts=drift)
        began = ro.status.canary_started_at or now
        since = _dur(max(a.window_s, now - began))
        before = self._cohorts("", _dur(a.baseline_s), began) if a.baseline_s > 0 else {}
        return Measurements(
            champion=self._variant("champion", ro.spec.champion, w, since, before),
            challenger=self._variant("challenger", version, w, since, before),
            drift_alerts=drift,
        )

    def _variant(
        self, variant: str, version: str, w: str, since: str, before: dict[str, Cohort]
    ) -> VariantStats:
        v, ver = f'variant="{variant}"', f'version="{version}"'
        requests = self._sum(f"increase(vidrec_requests_total{{{v}}}[{w}])")
        failed = self._sum(f'increase(vidrec_requests_total{{{v}, code!="200"}}[{w}])')
        degraded = self._sum(f"increase(vidrec_degraded_responses_total{{{v}}}[{w}])")
        total = f'{{{v}, stage="total"}}'
        p99 = self.provider.query(
            "histogram_quantile(0.99, sum by (le) (rate(vidrec_request_duration_seconds_bucket"
            f"{total}[{w}])))"
        )
        p99_s = p99[0].value if p99 and p99[0].value == p99[0].value else None  # NaN: no data
        le = self._by("le", f"increase(vidrec_request_duration_seconds_bucket{total}[{w}])")
        return VariantStats(
            requests=requests, failed=failed + degraded, p99_s=p99_s,
            latency_le=tuple(sorted((float(k), n) for k, n in le.items())),
            cohorts=tuple(
                dataclasses.replace(c, before=before.get(k))
                for k, c in sorted(self._cohorts(f"{{{v}, {ver}}}", since).items(),
                                   key=lambda kc: int(kc[0]))
            ),
        )  # fmt: skip

    def _cohorts(self, selector: str, since: str, at: float | None = None) -> dict[str, Cohort]:
        """Engagement per cohort over `since`, ending now or at `at`."""

        def per_cohort(metric: str) -> dict[str, float]:
            return self._by("cohort", f"increase({metric}{selector}[{since}])", at)

        imp = per_cohort("vidrec_impressions_total")
        clicks, watch = per_cohort("vidrec_clicks_total"), per_cohort("vidrec_watch_seconds_total")
        return {k: Cohort(n, clicks.get(k, 0.0), watch.get(k, 0.0)) for k, n in imp.items()}

    def _by(self, label: str, promql: str, at: float | None = None) -> dict[str, float]:
        found = self.provider.query(f"sum by ({label}) ({promql})", at)
        return {s.labels.get(label, ""): s.value for s in found if s.value == s.value}

    def _shadow(self, version: str, w: str) -> ShadowStats:
        by = self._by("outcome", f"increase(vidrec_shadow_requests_total[{w}])")
        calls = by.get("compared", 0.0) + by.get("degraded", 0.0) + by.get("failed", 0.0)
        ver = f'{{version="{version}"}}'
        total = self._sum(f"increase(vidrec_shadow_overlap_ratio_sum{ver}[{w}])")
        count = self._sum(f"increase(vidrec_shadow_overlap_ratio_count{ver}[{w}])")
        failed = by.get("degraded", 0.0) + by.get("failed", 0.0)
        return ShadowStats(calls, failed, mean_overlap(total, count))

    def _drift(self, version: str) -> tuple[str, ...]:
        found = self.provider.query(
            f'ALERTS{{alertstate="firing", alertname=~"{DRIFT_ALERTS}", version="{version}"}}'
        )
        names = {f"{s.labels['alertname']}({s.labels.get('feature', 'score')})" for s in found}
        return tuple(sorted(names))

    def _sum(self, promql: str) -> float:
        return sum(s.value for s in self.provider.query(f"sum({promql})") if s.value == s.value)


def _dur(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def mean_overlap(total: float, count: float) -> float | None:
    """The mean of overlaps (each in [0, 1]) from their sum's and count's increase():
    Prometheus extrapolates the two series apart, so the ratio strays past the ends (CI saw
    1.046 and 1.0000000000000016 fail a good challenger on bounds [0, 1]): clamped."""
    return min(1.0, max(0.0, total / count)) if count > 0 else None
