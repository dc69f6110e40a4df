"""An analysis: measurements in, one verdict per check out. Pure: no I/O, no clock.

A check passes only on enough data: too few requests, impressions or shadow calls, an
unreachable Prometheus or a challenger serving has not loaded yet are *inconclusive*,
never a pass (Flagger and Argo Rollouts learned this the hard way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vidrec.config import AnalysisPolicy, RolloutPolicy, ShadowPolicy, Strict
from vidrec.rollout.stats import mean_worse, proportion_worse

Result = Literal["pass", "fail", "inconclusive"]


class Check(Strict):
    name: str
    result: Result
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class VariantStats:
    """One variant's numbers: the first three over the analysis window, the rest (engagement)
    since the canary began, so the sticky cohort's evidence accumulates."""

    requests: float
    failed: float  # non-200 answers plus degraded (fallback) responses
    p99_s: float | None  # None: no latency samples
    impressions: float = 0.0
    clicks: float = 0.0
    watch_s: float = 0.0
    watch_sq: float = 0.0  # sum of squared watch seconds per impression


@dataclass(frozen=True)
class ShadowStats:
    calls: float  # shadow calls that came back (compared, degraded or failed)
    failed: float  # degraded or failed
    overlap: float | None  # mean overlap@k of the compared ones


@dataclass(frozen=True)
class Measurements:
    loaded: bool = True  # serving has loaded the challenger
    champion: VariantStats | None = None
    challenger: VariantStats | None = None
    shadow: ShadowStats | None = None
    drift_alerts: tuple[str, ...] = ()  # firing drift alerts on the challenger's version
    unavailable: str | None = None  # why no measurement could be made (Prometheus down)


def analyse(phase: str, m: Measurements, policy: RolloutPolicy) -> list[Check]:
    if m.unavailable is not None:
        return [Check(name="metrics", result="inconclusive", detail=m.unavailable)]
    if not m.loaded:
        detail = "serving has not loaded the challenger yet"
        return [Check(name="challenger_loaded", result="inconclusive", detail=detail)]
    checks = shadow_checks(m, policy.shadow, policy.analysis) if phase == "shadow" else []
    if phase == "canary":
        checks = canary_checks(m, policy.analysis)
    return [*checks, drift_check(m)]


def shadow_checks(m: Measurements, s: ShadowPolicy, a: AnalysisPolicy) -> list[Check]:
    st = m.shadow or ShadowStats(0, 0, None)
    if st.calls < s.min_requests:
        detail = f"{st.calls:.0f} shadow calls in the window, need {s.min_requests}"
        return [_few("shadow_requests", st.calls, s.min_requests, detail)]
    errors = st.failed / st.calls
    checks = [_at_most("shadow_error_ratio", errors, a.error_ratio_max)]
    if st.overlap is None:
        checks.append(_few("shadow_overlap", None, s.min_overlap, "no compared shadow calls"))
    else:
        inside = s.min_overlap <= st.overlap <= s.max_overlap
        checks.append(
            Check(name="shadow_overlap", result="pass" if inside else "fail", value=st.overlap,
                  threshold=s.min_overlap if st.overlap < s.min_overlap else s.max_overlap,
                  detail=f"mean overlap@k {st.overlap:.3f}, bounds [{s.min_overlap}, "
                  f"{s.max_overlap}]")
        )  # fmt: skip
    return checks


def canary_checks(m: Measurements, a: AnalysisPolicy) -> list[Check]:
    ch, c0 = m.challenger, m.champion
    return [*_service_checks(ch, c0, a), *_engagement_checks(ch, c0, a)]


def _service_checks(
    ch: VariantStats | None, c0: VariantStats | None, a: AnalysisPolicy
) -> list[Check]:
    if ch is None or ch.requests < a.min_requests:
        n = ch.requests if ch else 0.0
        detail = f"challenger answered {n:.0f} requests in the window, need {a.min_requests}"
        return [_few(name, n, a.min_requests, detail) for name in ("latency_p99", "error_ratio")]
    checks = [_at_most("error_ratio", ch.failed / ch.requests, a.error_ratio_max)]
    if ch.p99_s is None:
        checks.append(_few("latency_p99", None, a.latency_slo_s, "no latency samples"))
        return checks
    checks.append(_at_most("latency_p99", ch.p99_s, a.latency_slo_s))
    if c0 is None or c0.requests < a.min_requests or c0.p99_s is None:
        n = c0.requests if c0 else 0.0
        detail = f"champion answered {n:.0f} requests in the window, need {a.min_requests}"
        checks.append(_few("latency_vs_champion", ch.p99_s, None, detail))
    else:
        limit = c0.p99_s * (1 + a.latency_max_regression)
        checks.append(_at_most("latency_vs_champion", ch.p99_s, limit))
    return checks


def _engagement_checks(
    ch: VariantStats | None, c0: VariantStats | None, a: AnalysisPolicy
) -> list[Check]:
    n_c, n_0 = (ch.impressions if ch else 0.0), (c0.impressions if c0 else 0.0)
    if ch is None or c0 is None or min(n_c, n_0) < a.min_impressions:
        detail = (
            f"impressions since the canary began: challenger {n_c:.0f}, champion {n_0:.0f}; "
            f"need {a.min_impressions} each"
        )
        return [_few(n, min(n_c, n_0), a.min_impressions, detail) for n in ("ctr", "watch_time")]
    ctr = proportion_worse(ch.clicks, n_c, c0.clicks, n_0, a.engagement_margin)
    watch = mean_worse(
        ch.watch_s, ch.watch_sq, n_c, c0.watch_s, c0.watch_sq, n_0, a.engagement_margin
    )
    return [
        _not_worse("ctr", ch.clicks / n_c, c0.clicks / n_0, ctr.p, a),
        _not_worse("watch_time", ch.watch_s / n_c, c0.watch_s / n_0, watch.p, a),
    ]


def drift_check(m: Measurements) -> Check:
    firing = ", ".join(m.drift_alerts)
    return Check(
        name="drift_alerts",
        result="fail" if m.drift_alerts else "pass",
        value=float(len(m.drift_alerts)),
        threshold=0.0,
        detail=f"firing on the challenger: {firing}" if firing else "none firing",
    )


def _not_worse(name: str, chal: float, champ: float, p: float, a: AnalysisPolicy) -> Check:
    worse = p < a.alpha
    return Check(
        name=name, result="fail" if worse else "pass", value=chal, threshold=champ,
        detail=f"challenger {chal:.4g} vs champion {champ:.4g}: one-sided p = {p:.3g} "
        f"({'worse' if worse else 'not significantly worse'} at alpha {a.alpha})",
    )  # fmt: skip


def _at_most(name: str, value: float, limit: float) -> Check:
    ok = value <= limit
    return Check(
        name=name, result="pass" if ok else "fail", value=value, threshold=limit,
        detail=f"{value:.4g} {'<=' if ok else '>'} {limit:.4g}",
    )  # fmt: skip


def _few(name: str, value: float | None, threshold: float | None, detail: str) -> Check:
    return Check(name=name, result="inconclusive", value=value, threshold=threshold, detail=detail)
