"""The time-of-day key of the drift reference's blocks."""

from __future__ import annotations

import numpy as np

from vidrec.config import DAY, T0
from vidrec.features.bins import count_column
from vidrec.features.hours import (
    HOUR_EDGES,
    block_times,
    hour_counts,
    hour_of_day,
    nearest_block,
    nearest_hour,
)


def test_the_reference_is_served_every_block_over_the_day_before_the_data_end() -> None:
    end = T0 + 30 * DAY - 20  # the last impression, 23:59:40
    got = block_times(end, 4 * 3600)
    assert [(end - t) // 3600 for t in got] == [0, 4, 8, 12, 16, 20]
    assert [nearest_hour(t) for t in got] == [0, 20, 16, 12, 8, 4]
    assert hour_of_day(end) == 23 and hour_of_day(T0 + 3600 * 27 + 5) == 3
    # over three days: the same hours again, a day earlier each time (block j % 6)
    three = block_times(end, 4 * 3600, days=3)
    assert len(three) == 18 and three[:6] == got
    assert [three[j] - three[j + 6] for j in range(12)] == [DAY] * 12


def test_nearest_block_goes_around_the_clock() -> None:
    blocks = [0, 4, 8, 12, 16, 20]
    assert [blocks[nearest_block(h, blocks)] for h in (23, 0, 1, 2, 5, 6, 21, 22)] == [
        0, 0, 0, 4, 4, 8, 20, 0]  # fmt: skip
    assert nearest_block(23, [4, 12]) == 0  # 23:30 is 4.5 h from 04:00, 11.5 h from 12:00


def test_hour_counts_bin_like_the_histograms_serving_exports() -> None:
    got = hour_counts(T0 + 5 * 3600 + 59)
    assert got.counts.index(1) == 5 and sum(got.counts) == 1
    binned = count_column(np.array([5.0]), np.asarray(HOUR_EDGES))
    assert binned.counts == got.counts and len(got.counts) == len(HOUR_EDGES) + 1
