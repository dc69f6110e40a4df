"""The ranker's scoring interface for serving, and the factory that picks one.

Two implementations, one per file: `lleaves_scorer.LleavesScorer` (the model
compiled to machine code, the fast default) and `lightgbm_scorer.LightGBMScorer`
(LightGBM's own predictor, the reference and the fallback). Both return
probabilities, exactly what `lgb.Booster.predict` returns for the binary
objective. The factory never returns a fast scorer that disagrees with the
reference: a scorer that is quick and wrong is worse than a slow one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vidrec.models.lightgbm_scorer import LightGBMScorer
from vidrec.models.lleaves_scorer import LleavesScorer

log = logging.getLogger(__name__)
TOLERANCE = 1e-6  # probabilities; both compute in float64, so they agree to ~1e-15


class Scorer(Protocol):
    kind: str

    def score(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """(n, features) float matrix, NaN = missing -> (n,) click probabilities."""


def load_scorer(model_txt: Path, fast: bool = True) -> Scorer:
    """lleaves when `fast` and it compiles and agrees with LightGBM; else LightGBM."""
    reference = LightGBMScorer.load(model_txt)
    if not fast:
        return reference
    try:
        scorer = LleavesScorer.load(model_txt)
        diff = max_abs_diff(scorer, reference, probe_rows(reference.num_features))
    except Exception as e:  # any failure to compile or load means: use the reference
        log.warning("lleaves unavailable for %s, scoring with LightGBM: %r", model_txt, e)
        return reference
    if not diff <= TOLERANCE:  # also catches NaN
        log.warning("lleaves disagrees with LightGBM on %s by %g; using LightGBM", model_txt, diff)
        return reference
    return scorer


def max_abs_diff(a: Scorer, b: Scorer, x: npt.NDArray[Any]) -> float:
    return float(np.max(np.abs(a.score(x) - b.score(x))))


def probe_rows(num_features: int, n: int = 256, seed: int = 0) -> npt.NDArray[np.float64]:
    """Rows at mixed scales, with missing values, to catch a bad compile or a stale cache."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, num_features)) * 10.0 ** rng.integers(-2, 5, (n, num_features))
    x[rng.random(x.shape) < 0.1] = np.nan
    return x
