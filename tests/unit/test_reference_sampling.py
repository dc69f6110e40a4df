"""How the drift reference measures its effective sample size from the log."""

from __future__ import annotations

import pandas as pd
import pytest

from vidrec.training.serving_reference import requests_per_user


def test_requests_per_user_counts_a_user_once_per_window_of_each_length() -> None:
    # user 1: two requests in the first minute, one at 200 s, one at 30 min; user 2: at 400 s
    log = pd.DataFrame({"ts": [0, 10, 200, 1800, 400], "user_id": [1, 1, 1, 1, 2]})
    got = requests_per_user(log, 0, 3600)
    assert got[60] == pytest.approx(5 / 4, abs=1e-4)  # minutes 0 {1, 1}, 3 {1}, 6 {2}, 30 {1}
    assert got[300] == pytest.approx(5 / 3, abs=1e-4)
    assert got[3600] == pytest.approx(5 / 2, abs=1e-4)
    assert 86_400 not in got  # longer than the stretch measured
    assert requests_per_user(log, 0, 60) == {60: 2.0}  # only ts in [start, end)
