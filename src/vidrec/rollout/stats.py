"""One-sided 'is the challenger worse?' tests on the counters serving exports.

They compare the challenger with the champion times (1 - margin) on the sticky cohorts
(a user's variant is fixed by a hash, so the two groups are a randomised split).

Engagement is tested per cluster: serving labels its engagement counters with a user
cohort (a fixed hash group of users), and the ratio's variance comes from how the
cohorts differ (the cluster-robust, delta-method variance of a ratio estimator). Counting
impressions as independent would be wrong: one heavy user's impressions move together,
and two sticky cohorts of users differ by far more than impression counts suggest (a
first demo run rolled back an equal model that way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Worse:
    """Result of a one-sided test: `p` small means the challenger is worse."""

    z: float
    p: float


def phi(z: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-z / math.sqrt(2))


def proportion_worse(
    hits_c: float, n_c: float, hits_0: float, n_0: float, margin: float = 0.0
) -> Worse:
    """Challenger rate hits_c/n_c vs champion hits_0/n_0 * (1 - margin) (Wald z test), for
    independent trials (requests: each is its own draw of latency)."""
    p_c, p_0 = hits_c / n_c, hits_0 / n_0
    scale = 1 - margin
    var = p_c * (1 - p_c) / n_c + scale**2 * p_0 * (1 - p_0) / n_0
    return _worse(p_c - scale * p_0, var, df=None)


def ratio_worse(
    y_c: Sequence[float], n_c: Sequence[float], y_0: Sequence[float], n_0: Sequence[float],
    margin: float = 0.0,
) -> Worse:  # fmt: skip
    """Challenger sum(y)/sum(n) vs champion's * (1 - margin), with y and n given per
    cluster (cohort); Student's t with the smaller cluster count - 1 degrees of freedom."""
    r_c, v_c = _ratio(y_c, n_c)
    r_0, v_0 = _ratio(y_0, n_0)
    scale = 1 - margin
    df = min(len(y_c), len(y_0)) - 1
    return _worse(r_c - scale * r_0, v_c + scale**2 * v_0, df=df)


def _ratio(y: Sequence[float], n: Sequence[float]) -> tuple[float, float]:
    """Ratio of sums and its cluster-robust variance: G/(G-1) * sum((y - R n)^2) / N^2."""
    g, total_y, total_n = len(y), sum(y), sum(n)
    r = total_y / total_n
    resid = sum((yi - r * ni) ** 2 for yi, ni in zip(y, n, strict=True))
    return r, g / (g - 1) * resid / total_n**2


def _worse(diff: float, var: float, df: int | None) -> Worse:
    if var <= 0:  # no spread at all: the sign decides
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Worse(z, phi(z))
    z = diff / math.sqrt(var)
    return Worse(z, phi(z) if df is None else float(stats.t.cdf(z, df)))
