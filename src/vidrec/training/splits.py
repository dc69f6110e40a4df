"""Time-ordered train / validation / test windows, never random splits.

A model trained "at" the start of validation can only have seen labels that
had settled by then, so the training window ends at least one label horizon
before validation starts (and likewise validation before test). Rows in the
gaps are excluded and counted, not mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vidrec.config import DAY
from vidrec.errors import ConfigError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Window:
    start: int  # inclusive, epoch seconds
    end: int  # exclusive

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY


@dataclass(frozen=True)
class Splits:
    train: Window
    validation: Window
    test: Window
    gap_s: int

    def assign(self, ts: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
        """'train' / 'validation' / 'test' per timestamp; 'gap' between windows, 'out' outside."""
        out = np.full(ts.shape, "out", dtype=object)
        out[(ts >= self.train.end) & (ts < self.test.end)] = "gap"
        for name in SPLITS:
            w: Window = getattr(self, name)
            out[(ts >= w.start) & (ts < w.end)] = name
        return out.astype(str)


def time_splits(
    t_min: int,
    t_max: int,
    validation_days: float,
    test_days: float,
    gap_s: int,
    label_horizon_s: int,
) -> Splits:
    """Test is the last `test_days` before t_max, validation before it, train the rest."""
    if gap_s < label_horizon_s:
        raise ConfigError(
            f"split gap_s ({gap_s}) must be >= the label horizon "
            f"({label_horizon_s}): otherwise training sees labels that had not "
            "settled when validation starts",
            key="gap_s",
        )
    if validation_days <= 0 or test_days <= 0:
        raise ConfigError("validation_days and test_days must be > 0", key="validation_days")
    test = Window(t_max + 1 - round(test_days * DAY), t_max + 1)
    validation = Window(test.start - gap_s - round(validation_days * DAY), test.start - gap_s)
    train = Window(t_min, validation.start - gap_s)
    if train.end <= train.start:
        span = (t_max - t_min) / DAY
        raise ConfigError(
            f"the log spans {span:.1f} days: too short for {validation_days} "
            f"validation + {test_days} test days + 2 gaps of {gap_s} s and any "
            "training window",
            key="validation_days",
        )
    return Splits(train, validation, test, gap_s)
