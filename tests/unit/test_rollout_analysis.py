"""Analysis checks and the engagement tests: enough data or inconclusive, thresholds,
and tests that detect a worse challenger without crying wolf on an equal one."""

from __future__ import annotations

import numpy as np
import pytest

from vidrec.config import AnalysisPolicy, RolloutPolicy, ShadowPolicy
from vidrec.rollout.analysis import Measurements, ShadowStats, VariantStats, analyse
from vidrec.rollout.stats import mean_worse, proportion_worse

POLICY = RolloutPolicy(
    analysis=AnalysisPolicy(min_requests=100, min_impressions=1000, latency_slo_s=0.1,
                            latency_max_regression=0.2, error_ratio_max=0.01, alpha=0.01),
    shadow=ShadowPolicy(min_requests=50, min_overlap=0.1, max_overlap=0.9),
)  # fmt: skip


def stats(requests: float = 500, failed: float = 0, p99: float | None = 0.03,
          impressions: float = 5000, clicks: float = 500, watch: float = 5000.0,
          watch_sq: float = 100_000.0) -> VariantStats:  # fmt: skip
    return VariantStats(requests, failed, p99, impressions, clicks, watch, watch_sq)


def results(m: Measurements, phase: str = "canary") -> dict[str, str]:
    return {c.name: c.result for c in analyse(phase, m, POLICY)}


def test_equal_variants_pass_every_check() -> None:
    got = results(Measurements(champion=stats(), challenger=stats()))
    assert got == {"error_ratio": "pass", "latency_p99": "pass", "latency_vs_champion": "pass",
                   "ctr": "pass", "watch_time": "pass", "drift_alerts": "pass"}  # fmt: skip


@pytest.mark.parametrize(
    "challenger, failing",
    [
        (stats(p99=0.2), {"latency_p99", "latency_vs_champion"}),
        (stats(p99=0.05), {"latency_vs_champion"}),  # under the SLO, 67 % above the champion
        (stats(failed=10), {"error_ratio"}),
        (stats(clicks=380), {"ctr"}),
        (stats(watch=3500.0, watch_sq=70_000.0), {"watch_time"}),
    ],
)
def test_a_worse_challenger_fails_the_right_check(
    challenger: VariantStats, failing: set[str]
) -> None:
    got = results(Measurements(champion=stats(), challenger=challenger))
    assert {k for k, v in got.items() if v == "fail"} == failing


def test_too_little_data_is_inconclusive_never_a_pass() -> None:
    few_requests = results(Measurements(champion=stats(), challenger=stats(requests=99, p99=9.0)))
    assert few_requests["latency_p99"] == few_requests["error_ratio"] == "inconclusive"
    few_impressions = results(
        Measurements(champion=stats(impressions=999, clicks=0), challenger=stats())
    )
    assert few_impressions["ctr"] == few_impressions["watch_time"] == "inconclusive"
    no_champion = results(Measurements(champion=stats(requests=0), challenger=stats()))
    assert no_champion["latency_vs_champion"] == "inconclusive"
    assert results(Measurements(challenger=stats(p99=None), champion=stats()))["latency_p99"] == (
        "inconclusive"
    )
    assert results(Measurements(unavailable="Prometheus down")) == {"metrics": "inconclusive"}
    assert results(Measurements(loaded=False)) == {"challenger_loaded": "inconclusive"}


def test_shadow_checks() -> None:
    def shadow(calls: float, failed: float, overlap: float | None) -> dict[str, str]:
        return results(Measurements(shadow=ShadowStats(calls, failed, overlap)), "shadow")

    assert shadow(100, 0, 0.5) == {"shadow_error_ratio": "pass", "shadow_overlap": "pass",
                                   "drift_alerts": "pass"}  # fmt: skip
    assert shadow(49, 0, 0.5)["shadow_requests"] == "inconclusive"
    assert shadow(100, 5, 0.5)["shadow_error_ratio"] == "fail"
    assert shadow(100, 0, 0.05)["shadow_overlap"] == "fail"
    assert shadow(100, 0, 0.95)["shadow_overlap"] == "fail"
    assert shadow(100, 0, None)["shadow_overlap"] == "inconclusive"


def test_a_firing_drift_alert_fails_in_every_phase() -> None:
    m = Measurements(champion=stats(), challenger=stats(), drift_alerts=("VidrecFeatureDrift(x)",))
    assert results(m)["drift_alerts"] == "fail"
    m2 = Measurements(
        shadow=ShadowStats(100, 0, 0.5), drift_alerts=("VidrecPredictionDrift(score)",)
    )
    assert results(m2, "shadow")["drift_alerts"] == "fail"


def test_proportion_test_has_its_level_and_power() -> None:
    rng = np.random.default_rng(0)
    n, p, trials = 5000, 0.1, 2000
    equal = [
        proportion_worse(rng.binomial(n, p), n, rng.binomial(n, p), n).p for _ in range(trials)
    ]
    assert 0.005 < np.mean(np.array(equal) < 0.05) < 0.08  # about alpha when equal
    worse = [proportion_worse(rng.binomial(n, 0.075), n, rng.binomial(n, p), n).p
             for _ in range(200)]  # fmt: skip
    assert np.mean(np.array(worse) < 0.01) > 0.8  # 25 % fewer clicks: found
    better = proportion_worse(600, n, 500, n)
    assert better.p > 0.99


def test_mean_test_uses_the_variance_from_the_sums_and_the_margin() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.exponential(10, 4000), rng.exponential(10, 4000)
    same = mean_worse(a.sum(), (a**2).sum(), a.size, b.sum(), (b**2).sum(), b.size)
    assert same.p > 0.01
    c = rng.exponential(9, 4000)  # 10 % less watch time
    worse = mean_worse(c.sum(), (c**2).sum(), c.size, b.sum(), (b**2).sum(), b.size)
    assert worse.p < 0.01
    tolerated = mean_worse(c.sum(), (c**2).sum(), c.size, b.sum(), (b**2).sum(), b.size, 0.2)
    assert tolerated.p > 0.5
