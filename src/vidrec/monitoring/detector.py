"""The drift detector interface, and the pure statistics around it.

A detector compares, feature by feature, a reference histogram with a serving
window's histogram over the same bins and returns a p-value and a distance per
feature. Which library does the test is an implementation detail behind
`BinnedDetector` (Alibi Detect by default, `alibi_detector.py`; its licence is BSL 1.1),
so it can be replaced without touching the monitor.

Histograms are counts of candidates; the candidates of one request share its
user, and the requests of one user share their user features, so the evidence
is closer to one sample per user. Both sides are therefore rescaled to an
effective sample size (`to_samples`) before a test: the reference to its distinct
users, the window to its requests over the requests per user that the log shows
for windows that long (`Reference.effective_samples`). Bins too sparse for a
chi-square test are pooled with their neighbours first (`pool_sparse`).
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


class SampleDetector(Protocol):
    name: str

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        """One result per feature; `reference[j]` and `current[j]` are feature j's values,
        one per independent sample (NaN already removed)."""
        ...


@dataclass(frozen=True)
class OnlineResult:
    drift: bool  # a test statistic crossed its threshold (latched until reset)
    seen: int  # samples fed since the detector was calibrated
    ratio: float  # largest statistic over its threshold (>= 1: drift); NaN until a window fills


class OnlineDetector(Protocol):
    """A stream detector calibrated for an expected run time between false alarms."""

    def update(self, rows: Array) -> OnlineResult:
        """Feed rows (samples x features) in arrival order; the state after the last."""
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


def pool_sparse(ref: Array, cur: Array, min_expected: float) -> tuple[Array, Array]:
    """Adjacent bins merged, left to right, until each group expects at least
    `min_expected` samples on the smaller side under "no drift" (Cochran's rule for the
    chi-square approximation; sparse bins otherwise make p-values far too small). A
    remainder joins the last group. Bins are ordered ranges, so neighbours are similar
    values; empty bins on both sides are dropped."""
    ref, cur = np.asarray(ref), np.asarray(cur)
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    total = ref.sum() + cur.sum()
    if total <= 0:
        return ref, cur
    expected = (ref + cur) * (min(ref.sum(), cur.sum()) / total)
    groups: list[list[int]] = []
    open_group: list[int] = []
    acc = 0.0
    for i, e in enumerate(expected):
        open_group.append(i)
        acc += e
        if acc >= min_expected:
            groups.append(open_group)
            open_group, acc = [], 0.0
    if open_group:
        if groups:
            groups[-1].extend(open_group)
        else:
            groups.append(open_group)
    return (np.array([ref[g].sum() for g in groups], dtype=ref.dtype),
            np.array([cur[g].sum() for g in groups], dtype=cur.dtype))  # fmt: skip


def effect_size(ref: Array, cur: Array, categorical: bool) -> float:
    """How far apart two histograms over the same bins are, whatever their sample sizes:
    the largest gap between their cumulative shares (the binned Kolmogorov-Smirnov distance,
    as samples mode measures on values) for ordered bins, the total variation distance for
    categories (whose order means nothing). In [0, 1]; NaN when either side is empty."""
    ref, cur = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return float("nan")
    gap = cur / cur.sum() - ref / ref.sum()
    return float(np.abs(gap).sum() / 2 if categorical else np.abs(np.cumsum(gap)).max())


def novelty_p_value(ref: Array, cur: Array, novel: Array) -> float:
    """One-sided Fisher exact test that bins `novel` (values the reference cannot hold, such
    as categories training never saw) are more common in `cur` than in `ref` (sample
    counts). With none of them in the reference, it is the chance that all k novel samples
    of the pooled two landed in `cur`: C(n_cur, k) / C(n, k). A handful of users from a new
    market is evidence a chi-square test, pooling sparse bins, would average away."""
    from scipy.stats import fisher_exact

    ref, cur = np.asarray(ref), np.asarray(cur)
    k_ref, k_cur = int(ref[novel].sum()), int(cur[novel].sum())
    if k_cur == 0:
        return 1.0
    table = [[k_cur, int(cur.sum()) - k_cur], [k_ref, int(ref.sum()) - k_ref]]
    return float(fisher_exact(table, alternative="greater").pvalue)


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
