"""One-sided 'is the challenger worse?' tests on the counters serving exports.

They compare the challenger with the champion times (1 - margin) on the sticky cohorts
(a user's variant is fixed by a hash, so the two groups are a randomised split).

Engagement is tested on user cohorts, the units the canary randomises (serving labels
its engagement counters with them), never on impressions: one heavy user's impressions
move together, and a first demo run rolled back an equal model on an impression-level
test. Three lessons shaped `adjusted_worse`:

- Cohorts differ before any model change: a 10 % canary is ten cohorts, and one demo's
  seeded ten clicked 14 % less than the rest under the *same* model. Each cohort is
  compared with its own engagement before the canary (CUPED, Deng et al. 2013).
- Watch time per user is heavily skewed, and with ten clusters a t statistic of a
  right-skewed mean has a heavy lower tail: a one-sided t-test rejected an equal
  challenger 6x too often (measured in a simulation). The p-value is therefore a
  randomisation test: the canary's cohorts were drawn at random, so the observed
  difference is ranked among the differences of random redraws.
- The evidence grows through a step; `analysis` looks once per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

Arr = npt.NDArray[np.float64]


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
    return _worse(p_c - scale * p_0, var)


def exceeds(hits: int, n: int, budget: float) -> float:
    """One-sided p that `hits` of `n` independent trials happen at a rate within `budget`
    (exact binomial: P(X >= hits))."""
    return float(stats.binom.sf(hits - 1, n, budget))


@dataclass(frozen=True)
class Clusters:
    """Per cluster: the outcome `y` (clicks, watch seconds) over `n` impressions since the
    canary began, and `before`, the cluster's own rate y/n before it (None: unknown)."""

    y: Sequence[float]
    n: Sequence[float]
    before: Sequence[float | None]


def adjusted_worse(c: Clusters, c0: Clusters, margin: float = 0.0, draws: int = 4000,
                   seed: int = 0) -> Worse:  # fmt: skip
    """Challenger rate vs champion's * (1 - margin), each cluster's rate adjusted for its
    rate before (CUPED: a pooled within-group slope), weighted by impressions. One-sided
    randomisation p-value over `draws` random reassignments of the clusters (seeded)."""
    n = np.array([*c.n, *c0.n], dtype=float)
    r = np.array([*c.y, *c0.y], dtype=float) / n
    chal = np.arange(n.size) < len(c.n)
    r[chal] /= 1 - margin  # "worse than champion * (1 - margin)" is "scaled worse than"
    x = _before([*c.before, *c0.before], n)
    theta = _slope(r, x, n, chal)
    adj = r - theta * (x - np.average(x, weights=n))
    observed = _diff(adj, n, chal[None, :])[0]
    rng = np.random.default_rng(seed)
    redraws = rng.random((draws, n.size)).argsort(axis=1) < chal.sum()
    null = _diff(adj, n, redraws)
    p = (1 + np.count_nonzero(null <= observed)) / (draws + 1)
    spread = float(null.std())
    if spread > 0:
        z = observed / spread
    else:  # every redraw gives the same difference: the sign decides
        z = 0.0 if observed == 0 else math.copysign(math.inf, observed)
    return Worse(float(z), float(p), _mean(adj, n, chal) * (1 - margin), _mean(adj, n, ~chal))


def _before(before: list[float | None], n: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The clusters' past rates; an unknown past is the mean known one (no adjustment)."""
    known = [b for b, w in zip(before, n, strict=True) if b is not None and w > 0]
    fill = sum(known) / len(known) if known else 0.0
    return np.array([fill if b is None else b for b in before], dtype=float)


def _slope(r: Arr, x: Arr, n: Arr, chal: npt.NDArray[np.bool_]) -> float:
    """Weighted least-squares slope of rate on past rate, within each group (a worse
    challenger must not bend it)."""
    sxx = sxy = 0.0
    for g in (chal, ~chal):
        dx = x[g] - np.average(x[g], weights=n[g])
        dr = r[g] - np.average(r[g], weights=n[g])
        sxx += float(np.sum(n[g] * dx * dx))
        sxy += float(np.sum(n[g] * dx * dr))
    return sxy / sxx if sxx > 0 else 0.0


def _diff(v: Arr, n: Arr, masks: npt.NDArray[np.bool_]) -> Arr:
    """Weighted mean of v inside each mask row minus outside it."""
    inside = (masks @ (n * v)) / (masks @ n)
    outside = ((~masks) @ (n * v)) / ((~masks) @ n)
    return np.asarray(inside - outside, dtype=float)


def _mean(v: Arr, n: Arr, mask: npt.NDArray[np.bool_]) -> float:
    return float(np.average(v[mask], weights=n[mask]))


def _worse(diff: float, var: float) -> Worse:
    if var <= 0:  # no spread at all: the sign decides
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Worse(z, phi(z))
    z = diff / math.sqrt(var)
    return Worse(z, phi(z))
