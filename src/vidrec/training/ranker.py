"""The LightGBM ranker, naive or corrected for position bias, trained in one run.

Objective: binary cross-entropy on clicks. A click at a rarely-examined
position says more than one at the top, so the corrected ranker weights each
click by 1 / theta_position (clipped), with theta estimated from the training
rows themselves (`position_bias.py`). The naive ranker is the same model
without weights; both are trained on the same rows so the difference is the
correction alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.features.definitions import FEATURES, as_float_matrix
from vidrec.features.spec import FeatureSet
from vidrec.training.position_bias import estimate_examination

Debias = Literal["none", "ipw"]
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "verbose": -1,
    "num_threads": 2,
    "seed": 0,
    "deterministic": True,
}


@dataclass
class LightGBMRanker:
    debias: Debias = "none"
    clip: float = 10.0  # max weight: bounds the variance one deep click can add
    rounds: int = 200
    fs: FeatureSet = FEATURES
    examination: npt.NDArray[np.float64] | None = None
    booster: lgb.Booster | None = field(default=None, repr=False)

    def weights(self, rows: pd.DataFrame) -> npt.NDArray[np.float64] | None:
        if self.debias == "none":
            return None
        pos = rows.position.to_numpy(np.int64)
        click = rows.label_click.to_numpy(np.float64)
        self.examination = estimate_examination(pos, rows.video_id.to_numpy(np.int64), click)
        w = np.minimum(1.0 / self.examination[pos], self.clip)
        return np.where(click > 0, w, 1.0)

    def fit(self, rows: pd.DataFrame) -> LightGBMRanker:
        data = lgb.Dataset(
            as_float_matrix(rows, self.fs),
            rows.label_click.to_numpy(),
            weight=self.weights(rows),
            feature_name=list(self.fs.model_inputs),
            free_raw_data=True,
        )
        self.booster = lgb.train(PARAMS, data, num_boost_round=self.rounds)
        return self

    def score(self, rows: pd.DataFrame) -> npt.NDArray[np.float64]:
        if self.booster is None:
            raise RuntimeError("LightGBMRanker.score before fit")
        return np.asarray(self.booster.predict(as_float_matrix(rows, self.fs)))
