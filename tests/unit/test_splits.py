import numpy as np
import pytest

from vidrec.config import DAY
from vidrec.errors import ConfigError
from vidrec.training.splits import time_splits


def test_windows_are_ordered_and_separated_by_the_gap() -> None:
    s = time_splits(
        0, 28 * DAY - 1, validation_days=3, test_days=3, gap_s=6 * 3600, label_horizon_s=6 * 3600
    )
    assert s.train.start == 0 < s.train.end
    assert s.validation.start - s.train.end == s.gap_s
    assert s.test.start - s.validation.end == s.gap_s
    assert s.test.end == 28 * DAY and s.validation.days == 3 and s.test.days == 3
    ts = np.array(
        [
            0,
            s.train.end - 1,
            s.train.end,
            s.validation.start,
            s.test.start,
            s.test.end - 1,
            s.test.end,
        ]
    )
    assert s.assign(ts).tolist() == ["train", "train", "gap", "validation", "test", "test", "out"]


def test_gap_shorter_than_label_horizon_is_refused() -> None:
    with pytest.raises(ConfigError, match="label horizon"):
        time_splits(0, 28 * DAY, 3, 3, gap_s=3600, label_horizon_s=6 * 3600)


def test_log_too_short_says_so() -> None:
    with pytest.raises(ConfigError, match=r"spans 5\.0 days"):
        time_splits(0, 5 * DAY, 3, 3, gap_s=3600, label_horizon_s=3600)
