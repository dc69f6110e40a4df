"""Baselines every model must beat: recent popularity and a logistic-regression ranker.

Both learn only from the point-in-time training set (rows of
`vidrec.features.training_set`), never from raw logs. Popularity is counted
per (country, age bucket) segment and backfilled from the global list, so a
user nobody has seen before still gets a sensible, segment-aware answer: the
fallback serving uses when retrieval fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from vidrec.features.definitions import FEATURES, as_float_matrix
from vidrec.features.spec import FeatureSet

Segment = tuple[str, str]  # (country, age bucket)
GLOBAL: Segment = ("*", "*")


@dataclass
class Popularity:
    """Clicks per video over the last `window_s` of training, per segment and overall."""

    window_s: int = 7 * 86_400
    min_segment_clicks: int = 20  # below this a segment's own list is too noisy to lead
    ranked: dict[Segment, list[int]] = field(default_factory=dict)
    scores: dict[Segment, dict[int, float]] = field(default_factory=dict)

    def fit(self, rows: pd.DataFrame) -> Popularity:
        recent = rows[(rows.ts >= rows.ts.max() - self.window_s) & (rows.label_click > 0)]
        self._add(GLOBAL, recent)
        for (country, age), part in recent.groupby(["user_country", "user_age_bucket"]):
            if len(part) >= self.min_segment_clicks:
                self._add((str(country), str(age)), part)
        return self

    def _add(self, seg: Segment, clicks: pd.DataFrame) -> None:
        counts = clicks.groupby("video_id").size()
        # most clicked first; ties by id so the list never depends on row order
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.ranked[seg] = [int(v) for v, _ in order]
        self.scores[seg] = {int(v): float(c) for v, c in order}

    def recommend(self, segment: Segment, k: int, exclude: Sequence[int] = ()) -> list[int]:
        """Top k for the segment, backfilled from the global list; `exclude` never returned."""
        seen = set(exclude)
        out: list[int] = []
        for seg in (segment, GLOBAL):
            for v in self.ranked.get(seg, []):
                if len(out) == k:
                    return out
                if v not in seen:
                    seen.add(v)
                    out.append(v)
        return out

    def score(self, rows: pd.DataFrame) -> npt.NDArray[np.float64]:
        """A ranking score per row: segment clicks, then global clicks as a tie-breaker."""
        glob = self.scores.get(GLOBAL, {})
        seg_scores = [
            self.scores.get((str(c), str(a)), {}).get(int(v), 0.0)
            for c, a, v in zip(rows.user_country, rows.user_age_bucket, rows.video_id, strict=True)
        ]
        tie = np.array([glob.get(int(v), 0.0) for v in rows.video_id], dtype=np.float64)
        return np.asarray(seg_scores, dtype=np.float64) + tie / (
            1.0 + max(glob.values(), default=0.0)
        )


@dataclass
class LogisticRanker:
    """P(click) from the model-input vector: imputed, standardised, L2-regularised."""

    fs: FeatureSet = FEATURES
    seed: int = 0
    model: Pipeline | None = None

    def fit(self, rows: pd.DataFrame) -> LogisticRanker:
        self.model = make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(max_iter=500, random_state=self.seed),
        )
        self.model.fit(as_float_matrix(rows, self.fs), rows.label_click.to_numpy())
        return self

    def score(self, rows: pd.DataFrame) -> npt.NDArray[np.float64]:
        if self.model is None:
            raise RuntimeError("LogisticRanker.score before fit")
        return np.asarray(self.model.predict_proba(as_float_matrix(rows, self.fs))[:, 1])
