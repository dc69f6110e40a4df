"""The hour of day a request's features were computed as of: the key of the drift
reference's blocks.

Rolling-window features follow the clock. Served at 04:00, "watches in the last day"
still holds yesterday evening's session; served at midnight it does not. Measured on a
demo-scale platform with one reference served at midnight, user_watches_1d flagged
drift in 15 of 36 quiet windows, all of them ending at night or in the morning. So
the reference is served as of several times of day (`block_times`) and counted per
block, serving counts each request by the hour of its features' snapshot
(`hour_counts`, riding along with the feature histograms as `HOUR_FEATURE`), and the
monitor compares a window with the blocks nearest its hours
(`Reference.at_hours`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vidrec.config import DAY
from vidrec.features.bins import BinCounts

HOUR_FEATURE = "as_of_hour"  # one count per request, in bin h for hour of day h (UTC)
HOURS = 24
HOUR_EDGES = tuple(h + 0.5 for h in range(HOURS - 1))


def hour_of_day(ts: Any) -> Any:
    """Hour of day (UTC) of epoch seconds, scalar or array."""
    return (np.asarray(ts, dtype=np.int64) // 3600) % HOURS


def hour_counts(as_of: int) -> BinCounts:
    """One request whose features are as of `as_of`, in `HOUR_EDGES` bins."""
    counts = [0] * HOURS
    counts[int(hour_of_day(as_of))] = 1
    return BinCounts(counts, 0, float(hour_of_day(as_of)))


def block_times(as_of: int, block_s: int, days: int = 1) -> list[int]:
    """The times the reference is served as of: `as_of` (the data's end), then every
    `block_s` before it, over `days` days. The j-th is block j % (DAY // block_s)'s."""
    return [as_of - k * block_s for k in range(days * (DAY // block_s))]


def nearest_hour(ts: int) -> int:
    """The hour of day nearest `ts` (a block served as of 23:59:40 is midnight's)."""
    return (int(ts) + 1800) // 3600 % HOURS


def nearest_block(hour: int, blocks: list[int]) -> int:
    """Index, among `blocks` (hours of day), of the one nearest the middle of `hour`,
    around the clock (with blocks at 0, 4, 8...: hours 2 to 5 go to 4)."""
    dist = [abs(hour + 0.5 - b) for b in blocks]
    return int(np.argmin([min(d, HOURS - d) for d in dist]))
