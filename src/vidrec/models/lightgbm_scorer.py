"""The reference scorer: LightGBM's own predictor on the saved `model.txt`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt


@dataclass
class LightGBMScorer:
    booster: lgb.Booster = field(repr=False)
    kind: str = "lightgbm"

    @classmethod
    def load(cls, model_txt: Path) -> LightGBMScorer:
        return cls(lgb.Booster(model_file=str(model_txt)))

    @property
    def num_features(self) -> int:
        return int(self.booster.num_feature())

    def score(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        # one thread: a request is one small batch, threads only add hand-off latency
        return np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)
