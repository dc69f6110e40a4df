"""Model inputs counted into the training reference's bins: one binning rule for the
reference (training) and for serving, so a drift monitor compares like with like.

Edges per feature: just below the training minimum, the training deciles, the
training maximum. So bin 0 counts values below the training range and the last
bin values above it (the out-of-range rate falls out of the same histogram), and
the bins in between hold about a tenth of the training rows each. Category codes
get a bin per training code instead (`category_edges`). The ranking
replica bins the feature matrix it scores and sends the counts back with its
answer; the server process adds them to the `vidrec_feature_value` histograms.
Missing values (NaN) are counted apart, not binned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

# bucket edges of the ranker's scores: served top-k (`vidrec_score`) and every scored
# candidate (`vidrec_feature_value{feature="score"}`, what prediction drift is tested on)
SCORE_EDGES = tuple(round(0.05 * i, 2) for i in range(1, 20))
SCORE_FEATURE = "score"


@dataclass(frozen=True)
class BinCounts:
    """One feature's counts: `counts[i]` values <= edges[i] (and > edges[i-1]); the last
    entry is above every edge. Not cumulative."""

    counts: list[int]
    missing: int
    total: float  # sum of the finite values (the histogram's _sum)


def range_edges(col: npt.NDArray[np.float64], deciles: int = 10) -> npt.NDArray[np.float64]:
    """Bin edges of one feature's finite training values (see the module docstring)."""
    if not len(col):
        return np.array([])
    lo, hi = float(col.min()), float(col.max())
    inner = np.quantile(col, np.linspace(0, 1, deciles + 1)[1:-1])
    return np.unique(np.concatenate([[np.nextafter(lo, -np.inf)], inner, [hi]]))


def category_edges(col: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Bin edges of an integer category code: each training code c gets the bin
    (c - 0.5, c] to itself, and the bins between them (and beyond both ends) hold codes
    training never saw. Deciles would put an unseen code in a seen neighbour's bin."""
    codes = np.unique(col)
    return np.sort(np.concatenate([codes - 0.5, codes]))


def unseen_bins(bins: int) -> npt.NDArray[np.int64]:
    """Indices, among a category code's `bins` bins, of those `category_edges` keeps for
    unseen codes: every other bin, from the first."""
    return np.arange(0, bins, 2)


def count_column(col: npt.NDArray[Any], edges: npt.NDArray[np.float64]) -> BinCounts:
    col = np.asarray(col, dtype=np.float64)
    finite = col[np.isfinite(col)]
    where = np.searchsorted(edges, finite, side="left")  # edges[i-1] < v <= edges[i]
    counts = np.bincount(where, minlength=len(edges) + 1)
    return BinCounts([int(c) for c in counts], int(len(col) - len(finite)), float(finite.sum()))


@dataclass(frozen=True)
class FeatureBins:
    names: list[str]
    edges: list[npt.NDArray[np.float64]]

    @classmethod
    def load(cls, path: Path, names: Sequence[str]) -> FeatureBins:
        """Edges for `names` (the model inputs, in matrix order) from a bundle reference;
        a feature absent from the reference (or a bundle without one) gets one open bin."""
        if not path.exists():
            log.warning("%s is missing: feature histograms get one open bin each", path)
            return cls(list(names), [np.array([])] * len(names))
        ref: dict[str, Any] = json.loads(path.read_text())["features"]
        edges = [np.asarray(ref.get(n, {}).get("edges", []), dtype=np.float64) for n in names]
        return cls(list(names), edges)

    def count(self, x: npt.NDArray[Any]) -> dict[str, BinCounts]:
        """`count_column` of every column (`total` up to float rounding), in one bincount
        over the matrix: a few numpy calls per feature were a tenth of a served request."""
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        sizes = [len(e) + 1 for e in self.edges]
        where = np.empty(x.shape, dtype=np.intp)
        for j, edges in enumerate(self.edges):
            where[:, j] = np.searchsorted(edges, x[:, j], side="left")
        where += np.cumsum([0, *sizes[:-1]], dtype=np.intp)  # column j's bins after j-1's
        counts = np.bincount(where[finite], minlength=sum(sizes)).tolist()
        missing = (~finite).sum(axis=0).tolist()
        totals = np.where(finite, x, 0.0).sum(axis=0).tolist()
        out, at = {}, 0
        for j, (name, size) in enumerate(zip(self.names, sizes, strict=True)):
            out[name] = BinCounts(counts[at : at + size], missing[j], totals[j])
            at += size
        return out


def score_bins(scores: npt.NDArray[Any]) -> BinCounts:
    """Scores in `SCORE_EDGES` bins, the way the score histograms count them."""
    return count_column(scores, np.asarray(SCORE_EDGES))
