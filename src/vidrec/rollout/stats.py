"""One-sided 'is the challenger worse?' tests on the counters serving exports.

They compare the challenger with the champion times (1 - margin) on the sticky cohorts
(a user's variant is fixed by a hash, so the two groups are a randomised split).

Engagement is tested per cluster: serving labels its engagement counters with a user
cohort (a fixed hash group of users), and the ratio's variance comes from how the
cohorts differ (the cluster-robust, delta-method variance of a ratio estimator). Counting
impressions as independent would be wrong: one heavy user's impressions move together,
and two sticky cohorts of users differ by far more than impression counts suggest (a
first demo run rolled back an equal model that way).

Cohorts also differ before any model change: a canary of 5 % is a handful of cohorts,
and one demo's seeded canary group clicked 14 % less than the rest under the *same*
model. `adjusted_worse` therefore compares each cohort with its own engagement before
the canary (CUPED, Deng et al. 2013): the share of the difference that the cohorts'
past explains is removed from both the estimate and its variance.
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
    challenger: float | None = None  # the estimates compared, when they are not raw rates
    champion: float | None = None


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


@dataclass(frozen=True)
class Clusters:
    """Per cluster: the outcome `y` (clicks, watch seconds) over `n` impressions since the
    canary began, and `before`, the cluster's own rate y/n before it (None: unknown)."""

    y: Sequence[float]
    n: Sequence[float]
    before: Sequence[float | None]


def adjusted_worse(c: Clusters, c0: Clusters, margin: float = 0.0) -> Worse:
    """Challenger rate vs champion's * (1 - margin), each adjusted for how its clusters did
    before (CUPED with a pooled within-group slope), weighted by impressions; Student's t
    with the smaller cluster count - 1 degrees of freedom. Without any spread in the
    `before` rates the slope is 0 and this is `ratio_worse`."""
    known = [x for g in (c, c0) for x, n in zip(g.before, g.n, strict=True) if x is not None and n]
    fill = sum(known) / len(known) if known else 0.0  # unknown past: no adjustment
    groups = [_Group(c, fill), _Group(c0, fill)]
    x_all = sum(g.sw * g.mx for g in groups) / sum(g.sw for g in groups)
    sxx = sum(g.sxx for g in groups)
    theta = sum(g.sxy for g in groups) / sxx if sxx > 0 else 0.0
    (m_c, v_c), (m_0, v_0) = (g.adjusted(theta, x_all) for g in groups)
    scale = 1 - margin
    df = min(len(c.y), len(c0.y)) - 1
    test = _worse(m_c - scale * m_0, v_c + scale**2 * v_0, df=df)
    return Worse(test.z, test.p, m_c, m_0)


class _Group:
    """One variant's clusters as impression-weighted rates r, with their past rates x."""

    def __init__(self, c: Clusters, fill: float) -> None:
        self.w = list(c.n)
        self.r = [y / n for y, n in zip(c.y, c.n, strict=True)]
        self.x = [fill if x is None else x for x in c.before]
        self.sw = sum(self.w)
        self.mr = self._mean(self.r)
        self.mx = self._mean(self.x)
        dx = [xi - self.mx for xi in self.x]
        self.sxx = sum(wi * d * d for wi, d in zip(self.w, dx, strict=True))
        self.sxy = sum(wi * d * (ri - self.mr) for wi, d, ri in zip(self.w, dx, self.r,
                                                                      strict=True))  # fmt: skip

    def _mean(self, v: list[float]) -> float:
        return sum(wi * vi for wi, vi in zip(self.w, v, strict=True)) / self.sw

    def adjusted(self, theta: float, x_all: float) -> tuple[float, float]:
        """The adjusted mean rate and its cluster-robust variance."""
        g = len(self.w)
        resid = [(ri - self.mr) - theta * (xi - self.mx)
                 for ri, xi in zip(self.r, self.x, strict=True)]  # fmt: skip
        var = g / (g - 1) * sum((wi * e) ** 2 for wi, e in zip(self.w, resid, strict=True))
        return self.mr - theta * (self.mx - x_all), var / self.sw**2


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
