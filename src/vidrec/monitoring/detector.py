"""The drift detector interface, and the pure statistics around it.

A detector compares, feature by feature, a reference histogram with a serving
window's histogram over the same bins and returns a p-value and a distance per
feature. Which library does the test is an implementation detail behind
`BinnedDetector` (Alibi Detect by default, `alibi_detector.py`; its licence is BSL 1.1),
so it can be replaced without touching the monitor.

Histograms are counts of candidates; the candidates of one request share its
user, so the evidence is closer to one sample per request. Both sides are
therefore rescaled to a sample size (`to_samples`) before a test: the window to
its request count (capped), the reference to its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Statistic:
    p_value: float
    distance: float


class BinnedDetector(Protocol):
    name: str

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        """One result per feature; `reference[j]` and `current[j]` are sample counts per bin
        of feature j (integers, already scaled to their sample sizes)."""
        ...


def to_samples(counts: Array, n: int) -> Array:
    """`counts` rescaled to sum to n, rounded by largest remainder (keeps the shape; an
    empty histogram stays empty)."""
    counts = np.clip(np.asarray(counts, dtype=np.float64), 0, None)
    total = counts.sum()
    if total <= 0 or n <= 0:
        return np.zeros(len(counts), dtype=np.int64)
    exact = counts * (n / total)
    out = np.floor(exact).astype(np.int64)
    short = n - int(out.sum())
    if short > 0:
        out[np.argsort(-(exact - out), kind="stable")[:short]] += 1
    return out


def drifted(
    p_values: Sequence[float], alpha: float, method: Literal["bonferroni", "fdr"]
) -> list[bool]:
    """Which features drift at family-wise level alpha (Bonferroni) or false discovery rate
    alpha (Benjamini-Hochberg). NaN p-values (not tested) never drift."""
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.isfinite(p)
    m = int(tested.sum())
    if m == 0:
        return [False] * len(p)
    if method == "bonferroni":
        return [bool(t and v < alpha / m) for t, v in zip(tested, p, strict=True)]
    order = np.argsort(np.where(tested, p, np.inf), kind="stable")[:m]
    below = p[order] <= alpha * np.arange(1, m + 1) / m
    k = int(np.nonzero(below)[0].max()) + 1 if below.any() else 0
    flags = np.zeros(len(p), dtype=bool)
    flags[order[:k]] = True
    return flags.tolist()
