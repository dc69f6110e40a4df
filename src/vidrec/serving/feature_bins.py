"""Model inputs counted into the training reference's quantile bins, per request.

The ranking replica bins the feature matrix it scores (edges: the deciles of
the training window, `reference/features.json` in the bundle) and sends the
counts back with its answer; the server process adds them to the
`vidrec_feature_value` histograms, so a drift monitor compares serving with
training bin for bin. Missing values (NaN) are counted apart, not binned.
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


@dataclass(frozen=True)
class BinCounts:
    """One feature's counts: `counts[i]` values <= edges[i] (and > edges[i-1]); the last
    entry is above every edge. Not cumulative."""

    counts: list[int]
    missing: int
    total: float  # sum of the finite values (the histogram's _sum)


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
        out = {}
        for j, (name, edges) in enumerate(zip(self.names, self.edges, strict=True)):
            col = np.asarray(x[:, j], dtype=np.float64)
            finite = col[np.isfinite(col)]
            where = np.searchsorted(edges, finite, side="left")  # edges[i-1] < v <= edges[i]
            counts = np.bincount(where, minlength=len(edges) + 1)
            out[name] = BinCounts(
                [int(c) for c in counts], int(len(col) - len(finite)), float(finite.sum())
            )
        return out
