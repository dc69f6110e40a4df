"""Analysis checks and the engagement tests: enough data or inconclusive, thresholds,
and tests that detect a worse challenger without crying wolf on an equal one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidrec.config import AnalysisPolicy, RolloutPolicy, ShadowPolicy
from vidrec.rollout.analysis import (
    Check,
    Cohort,
    Measurements,
    ShadowStats,
    VariantStats,
    analyse,
)
from vidrec.rollout.stats import Clusters, adjusted_worse, proportion_worse

POLICY = RolloutPolicy(
    analysis=AnalysisPolicy(min_requests=100, min_impressions=1000, latency_slo_s=0.1,
                            latency_max_regression=0.2, error_ratio_max=0.01, alpha=0.01),
    shadow=ShadowPolicy(min_requests=50, min_overlap=0.1, max_overlap=0.9),
)  # fmt: skip


def latency(n: float, slow: float) -> tuple[tuple[float, float], ...]:
    """Cumulative buckets: a share `slow` of the requests at 0.2 s, the rest under 20 ms."""
    fast = n * (1 - slow)
    return ((0.01, 0.0), (0.02, fast), (0.03, fast), (0.05, fast), (0.1, fast), (0.25, n),
            (math.inf, n))  # fmt: skip


def cohorts(ctr: float = 0.1, watch: float = 1.0, imp: float = 5000,
            seed: int = 0) -> tuple[Cohort, ...]:  # fmt: skip
    """32 cohorts whose users differ (10 % between-cohort spread), as real ones do."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(int(imp), np.full(32, 1 / 32))
    spread = rng.normal(1, 0.1, 32)
    pairs = zip(sizes, spread, strict=True)
    return tuple(Cohort(float(n), n * ctr * f, n * watch * f) for n, f in pairs)


def stats(requests: float = 500, failed: float = 0, p99: float | None = 0.02,
          slow: float = 0.0, ctr: float = 0.1, watch: float = 1.0, imp: float = 5000,
          seed: int = 0) -> VariantStats:  # fmt: skip
    return VariantStats(requests, failed, p99, latency(requests, slow),
                        cohorts(ctr, watch, imp, seed))  # fmt: skip


def checks(m: Measurements, phase: str = "canary", due: bool = True) -> dict[str, Check]:
    return {c.name: c for c in analyse(phase, m, POLICY, due)}


def results(m: Measurements, phase: str = "canary", due: bool = True) -> dict[str, str]:
    return {name: c.result for name, c in checks(m, phase, due).items()}


def test_equal_variants_pass_every_check() -> None:
    got = results(Measurements(champion=stats(), challenger=stats(seed=1, slow=0.005)))
    assert got == {"error_ratio": "pass", "latency_p99": "pass", "latency_vs_champion": "pass",
                   "ctr": "pass", "watch_time": "pass", "drift_alerts": "pass"}  # fmt: skip


@pytest.mark.parametrize(
    "challenger, failing",
    [
        (stats(p99=0.2, slow=0.5), {"latency_p99", "latency_vs_champion"}),
        # SLO met (0.8 % over it), but slow more often than the champion (0 %)
        (stats(requests=5000, p99=0.05, slow=0.008), {"latency_vs_champion"}),
        (stats(failed=10), {"error_ratio"}),
        (stats(ctr=0.08, seed=1), {"ctr"}),
        (stats(watch=0.8, seed=1), {"watch_time"}),
    ],
)
def test_a_worse_challenger_fails_the_right_check(
    challenger: VariantStats, failing: set[str]
) -> None:
    got = results(Measurements(champion=stats(), challenger=challenger))
    assert {k for k, v in got.items() if v == "fail"} == failing


def test_latency_slo_is_the_share_of_slow_requests_not_one_slowest_request() -> None:
    """p99 <= SLO means at most 1 % of requests over it: one slow request of 120 is a p99
    of 0.2 s but no evidence against the SLO; 10 % slow requests are."""

    def slo(requests: float, slow: float) -> dict[str, str]:
        ch = stats(requests=requests, slow=slow, p99=0.2)
        return results(Measurements(champion=stats(), challenger=ch))

    assert slo(120, 1 / 120)["latency_p99"] == "pass"
    assert slo(200, 0.1)["latency_p99"] == "fail"
    # increase() extrapolates counts: 179.8 requests, all slow, are 180 of 180, not 100.1 %
    extrapolated = VariantStats(180, 0, 0.25, ((0.1, -0.2), (math.inf, 179.8)), cohorts())
    check = checks(Measurements(champion=stats(), challenger=extrapolated))["latency_p99"]
    assert check.value == 1.0 and check.detail.startswith("180 of 180 requests"), check.detail
    no_edge = VariantStats(500, 0, 0.02, ((0.25, 500.0), (math.inf, 500.0)), cohorts())
    got = results(Measurements(champion=stats(), challenger=no_edge))
    assert got["latency_p99"] == "inconclusive"


def test_a_slo_the_champion_breaks_too_fails_only_a_slower_challenger() -> None:
    """CI's overloaded machine put half of both variants' requests over the 0.1 s SLO and
    a good challenger was rolled back for it. With the champion over the SLO in the same
    window, the challenger is judged against it: equal is inconclusive, slower fails."""

    def slo(champion: VariantStats, challenger: VariantStats) -> tuple[str, str]:
        check = checks(Measurements(champion=champion, challenger=challenger))["latency_p99"]
        return check.result, check.detail

    platform_slow = stats(requests=500, slow=0.5, p99=0.24)
    result, detail = slo(platform_slow, stats(requests=120, slow=0.5, p99=0.24, seed=1))
    assert result == "inconclusive" and "the champion too: 250 of 500" in detail
    assert slo(platform_slow, stats(requests=120, slow=0.8, p99=0.24, seed=1))[0] == "fail"
    # a champion within its budget (3 of 500 over) leaves the absolute test as it was
    assert slo(stats(slow=0.006), stats(requests=120, slow=0.5, p99=0.24, seed=1))[0] == "fail"
    # too few champion requests to say: the absolute test as well
    few = stats(requests=50, slow=0.5, p99=0.24)
    assert slo(few, stats(requests=120, slow=0.5, p99=0.24, seed=1))[0] == "fail"


def test_a_champion_p99_past_the_last_bucket_compares_at_that_bucket() -> None:
    """Two slow requests in 120 put the champion's interpolated p99 high in the top bucket
    (0.25-1 s); twice that has no bucket. The shares over 1 s are compared instead."""
    top = ((0.1, 110.0), (0.25, 118.0), (1.0, 120.0), (math.inf, 120.0))
    champion = VariantStats(120, 0, 0.9, top, cohorts())
    equal = VariantStats(120, 0, 0.3, top, cohorts(seed=1))
    got = checks(Measurements(champion=champion, challenger=equal))
    assert got["latency_vs_champion"].result == "pass"
    assert "over 1 s" in got["latency_vs_champion"].detail
    stalled = ((0.1, 80.0), (0.25, 90.0), (1.0, 95.0), (math.inf, 120.0))  # 25 over 1 s
    slow = VariantStats(120, 0, 5.0, stalled, cohorts(seed=1))
    got = checks(Measurements(champion=champion, challenger=slow))
    assert got["latency_vs_champion"].result == "fail"


def test_engagement_is_pending_until_the_step_is_due_then_tested() -> None:
    """Engagement is tested once per step (at alpha / steps), not at every look."""
    m = Measurements(champion=stats(), challenger=stats(ctr=0.08, seed=1))
    early = checks(m, due=False)
    assert early["ctr"].result == early["watch_time"].result == "pending"
    assert "alpha 0.00333" in early["ctr"].detail
    assert early["latency_p99"].result == "pass"  # service checks run at every look
    assert results(m, due=True)["ctr"] == "fail"


def test_each_cohort_is_compared_with_its_own_past() -> None:
    """An equal challenger whose cohorts happen to be low-engagement users: the raw test
    cries wolf, the test adjusted for each cohort's engagement before the canary does not;
    a truly worse challenger still fails it."""
    rng = np.random.default_rng(3)
    users = rng.lognormal(np.log(0.1), 0.3, 100)  # the cohorts' propensity to click
    low = np.argsort(users)[:10]  # the canary drew the 10 least engaged cohorts
    high = np.argsort(users)[10:]

    def variant(idx: np.ndarray, factor: float) -> tuple[Cohort, ...]:
        out = []
        for u in users[idx]:
            n, before = float(rng.poisson(400)), float(rng.poisson(1000))
            past = Cohort(before, rng.binomial(int(before), u), before)
            out.append(Cohort(n, float(rng.binomial(int(n), u * factor)), n, past))
        return tuple(out)

    def ctr(ch: tuple[Cohort, ...], c0: tuple[Cohort, ...]) -> str:
        got = VariantStats(500, 0, 0.02, latency(500, 0), ch)
        base = VariantStats(500, 0, 0.02, latency(500, 0), c0)
        return results(Measurements(champion=base, challenger=got))["ctr"]

    equal, champion = variant(low, 1.0), variant(high, 1.0)
    assert ctr(equal, champion) == "pass"
    no_past = tuple(Cohort(c.impressions, c.clicks, c.watch_s) for c in equal)
    assert ctr(no_past, champion) == "fail"  # what the unadjusted test said
    assert ctr(variant(low, 0.7), champion) == "fail"


def test_adjusted_test_keeps_its_level_and_gains_power() -> None:
    rng = np.random.default_rng(1)

    def trial(effect: float, adjust: bool) -> float:
        base = rng.lognormal(np.log(0.1), 0.4, 100)
        n_pre, n = rng.poisson(400, 100), rng.poisson(100, 100)
        before = rng.binomial(n_pre, base) / n_pre
        canary = rng.permutation(100) < 10
        y = rng.binomial(n, base * np.where(canary, 1 - effect, 1)).astype(float)
        past = before if adjust else [None] * 100

        def group(m: np.ndarray) -> Clusters:
            kept = [p for p, k in zip(past, m, strict=True) if k]
            return Clusters(y[m], n[m].astype(float), kept)

        return adjusted_worse(group(canary), group(~canary), draws=500).p

    for adjust in (False, True):
        assert np.mean([trial(0.0, adjust) < 0.05 for _ in range(400)]) < 0.08
    raw = np.mean([trial(0.2, False) < 0.01 for _ in range(300)])
    adjusted = np.mean([trial(0.2, True) < 0.01 for _ in range(300)])
    assert adjusted > raw + 0.05, (raw, adjusted)


def test_too_little_data_is_inconclusive_never_a_pass() -> None:
    few_requests = results(Measurements(champion=stats(), challenger=stats(requests=99, p99=9.0)))
    assert few_requests["latency_p99"] == few_requests["error_ratio"] == "inconclusive"
    few_impressions = results(Measurements(champion=stats(imp=999), challenger=stats()))
    assert few_impressions["ctr"] == few_impressions["watch_time"] == "inconclusive"
    few_cohorts = VariantStats(500, 0, 0.02, latency(500, 0), cohorts()[:4])
    assert results(Measurements(champion=stats(), challenger=few_cohorts))["ctr"] == (
        "inconclusive"
    )
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


def raw(y: np.ndarray, n: np.ndarray) -> Clusters:
    return Clusters(y, n, [None] * len(y))


def test_cohort_test_keeps_its_level_where_an_impression_test_does_not() -> None:
    """Users differ: with clustered clicks an impression-level test rejects an equal
    challenger far too often; the cohort test keeps its level and still finds a worse one."""
    rng = np.random.default_rng(2)

    def variant(mean: float) -> tuple[np.ndarray, np.ndarray]:
        n = rng.poisson(300, 32).astype(float)
        rate = rng.beta(mean * 20, (1 - mean) * 20, 32)  # cohorts' CTRs spread widely
        return rng.binomial(n.astype(int), rate).astype(float), n

    cohort_p, naive_p = [], []
    for _ in range(400):
        (y_c, n_c), (y_0, n_0) = variant(0.1), variant(0.1)
        cohort_p.append(adjusted_worse(raw(y_c, n_c), raw(y_0, n_0), draws=400).p)
        naive_p.append(proportion_worse(y_c.sum(), n_c.sum(), y_0.sum(), n_0.sum()).p)
    assert np.mean(np.array(cohort_p) < 0.05) < 0.08
    assert np.mean(np.array(naive_p) < 0.05) > 0.15
    found = [adjusted_worse(raw(*variant(0.05)), raw(*variant(0.1))).p < 0.01 for _ in range(100)]
    assert np.mean(found) > 0.8


def test_skewed_watch_time_on_few_cohorts_keeps_the_level() -> None:
    """Ten canary cohorts of a few users with heavy-tailed watch time: a one-sided t-test
    on the cohort means rejects an equal challenger several times too often (its lower
    tail is heavy); the randomisation test keeps its level."""
    from scipy import stats

    rng = np.random.default_rng(5)

    def trial() -> tuple[float, float]:
        users = rng.poisson(3, 100) + 1
        n = np.array([float((rng.poisson(3, u) * 10 + 10).sum()) for u in users])
        y = n * np.array([rng.lognormal(np.log(2), 1.5, u).mean() for u in users])
        canary = rng.permutation(100) < 10
        rate = y / n
        t = stats.ttest_ind(rate[canary], rate[~canary], equal_var=False,
                            alternative="less").pvalue  # fmt: skip
        return float(t), adjusted_worse(raw(y[canary], n[canary]),
                                        raw(y[~canary], n[~canary]), draws=1000).p  # fmt: skip

    t_p, perm_p = np.array([trial() for _ in range(500)]).T
    assert np.mean(t_p < 0.01) > 0.025
    assert np.mean(perm_p < 0.01) < 0.02


def test_the_mean_overlap_stays_within_its_range_whatever_increase_extrapolates() -> None:
    from vidrec.rollout.measure import mean_overlap

    assert mean_overlap(27.2, 26.0) == 1.0  # _sum extrapolated past _count: CI saw 1.046
    assert mean_overlap(-0.1, 5.0) == 0.0
    assert mean_overlap(13.0, 26.0) == 0.5
    assert mean_overlap(3.0, 0.0) is None  # no compared calls
