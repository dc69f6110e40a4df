"""How the drift reference draws its requests from the log and measures its effective
sample size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vidrec.config import DAY, T0, Settings, TrainConfig
from vidrec.features.definitions import FEATURES
from vidrec.features.hours import block_times, nearest_hour
from vidrec.features.pit import snapshot_after
from vidrec.training.serving_reference import (
    ServedRows,
    requests_per_user,
    serving_reference,
)


def test_requests_per_user_counts_a_user_once_per_window_of_each_length() -> None:
    # user 1: two requests in the first minute, one at 200 s, one at 30 min; user 2: at 400 s
    log = pd.DataFrame({"ts": [0, 10, 200, 1800, 400], "user_id": [1, 1, 1, 1, 2]})
    got = requests_per_user(log, 0, 3600)
    assert got[60] == pytest.approx(5 / 4, abs=1e-4)  # minutes 0 {1, 1}, 3 {1}, 6 {2}, 30 {1}
    assert got[300] == pytest.approx(5 / 3, abs=1e-4)
    assert got[3600] == pytest.approx(5 / 2, abs=1e-4)
    assert 86_400 not in got  # longer than the stretch measured
    assert requests_per_user(log, 0, 60) == {60: 2.0}  # only ts in [start, end)


class _RecordingPath:
    """The serving path's interface, recording what it is asked to serve: two candidates
    per request, every input the request's snapshot time (constant within a request)."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.served = settings, pd.DataFrame()

    def serve(self, frame: pd.DataFrame) -> ServedRows:
        self.served = frame
        ids = np.repeat(frame.request_id.to_numpy(), 2)
        x = np.repeat(frame.ts.to_numpy(np.float64), 2)[:, None] * np.ones(
            len(FEATURES.model_inputs)
        )
        return ServedRows(ids, x, np.full(len(ids), 0.5), np.repeat(np.arange(len(frame)), 2))

    def units(self, video_ids: Any) -> dict[str, int]:
        return {"video": len(np.unique(video_ids))}


def test_each_block_pools_its_hour_over_the_days_for_users_of_the_lookback(
    tmp_path: Path,
) -> None:
    train = TrainConfig(reference_days=3, reference_lookback_s=3600, reference_requests=30)
    path = _RecordingPath(Settings(train=train))
    as_of = T0 + 10 * DAY - 25  # the log's last second: the snapshot holding it is midnight's
    # one user's requests, every 5 minutes over five days
    ts = np.arange(as_of - 5 * DAY, as_of, 300)
    log = pd.DataFrame({"request_id": np.arange(len(ts)), "ts": ts, "user_id": 7})
    ref = serving_reference(path, log, tmp_path / "none.json", as_of)  # type: ignore[arg-type]
    served = path.served
    ends = block_times(T0 + 10 * DAY, train.reference_block_s, 3)
    assert sorted(served.served_at.unique()) == sorted(ends)
    logged = log.set_index("request_id").ts
    original = logged.reindex(served.request_id // len(ends)).to_numpy()
    # served as of its snapshot, drawn from the hour before it, never from elsewhere
    assert (served.ts == served.served_at).all()
    assert ((original >= served.served_at - 3600) & (original < served.served_at)).all()
    # six blocks of 30 requests, 10 per day; a block's hour is its snapshots'
    b = ref["blocks"]
    assert b["requests"] == [30] * 6 and ref["requests"] == 180
    assert served.groupby("served_at").size().tolist() == [10] * 18
    assert b["hours"] == [nearest_hour(e) for e in ends[:6]]
    # the user on three days is three samples: their features moved on in between
    assert b["samples"] == [3] * 6 and ref["samples"] == 18
    assert ref["request_inputs"]["blocks"] == list(range(6))  # one user, once per block
    # in all: the blocks' counts add up
    assert np.asarray(b["score"]).sum(axis=0).tolist() == ref["score"]["counts"]
    assert (ref["lookback_s"], ref["days"]) == (3600, 3)


def test_the_reference_is_served_as_of_the_snapshot_holding_the_data_end() -> None:
    assert snapshot_after(3600, T0 + DAY - 25) == T0 + DAY  # not 23:00's, missing an hour
    assert snapshot_after(3600, T0 + DAY) == T0 + DAY
    assert snapshot_after(0, T0 + DAY - 25) == T0 + DAY - 25  # no refresh: exactly then
