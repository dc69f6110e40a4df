"""One-sided 'is the challenger worse?' tests on the counters serving exports.

Both ask whether the challenger's engagement is below the champion's times (1 - margin),
on the sticky cohorts (a user's variant is fixed by a hash, so the two groups are a
randomised split). The unit is the impression: impressions of one slate are correlated,
which makes the standard error a little optimistic; a small `alpha` and needing
`failure_limit` consecutive failures keep false rollbacks rare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
    """Challenger rate hits_c/n_c vs champion hits_0/n_0 * (1 - margin) (Wald z test)."""
    p_c, p_0 = hits_c / n_c, hits_0 / n_0
    scale = 1 - margin
    var = p_c * (1 - p_c) / n_c + scale**2 * p_0 * (1 - p_0) / n_0
    return _worse(p_c - scale * p_0, var)


def mean_worse(
    sum_c: float, sq_c: float, n_c: float, sum_0: float, sq_0: float, n_0: float,
    margin: float = 0.0,
) -> Worse:  # fmt: skip
    """Challenger mean vs champion mean * (1 - margin), from sums and sums of squares
    (Welch's z test: the counters give no per-impression values, but these suffice)."""
    m_c, m_0 = sum_c / n_c, sum_0 / n_0
    v_c, v_0 = max(sq_c / n_c - m_c**2, 0.0), max(sq_0 / n_0 - m_0**2, 0.0)
    scale = 1 - margin
    return _worse(m_c - scale * m_0, v_c / n_c + scale**2 * v_0 / n_0)


def _worse(diff: float, var: float) -> Worse:
    if var > 0:
        return Worse(diff / math.sqrt(var), phi(diff / math.sqrt(var)))
    z = 0.0 if diff == 0 else math.copysign(math.inf, diff)  # no spread: the sign decides
    return Worse(z, phi(z))
