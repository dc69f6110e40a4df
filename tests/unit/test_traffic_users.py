"""Simulated users: requests in proportion to activity, outcomes from the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vidrec.errors import InvalidInput
from vidrec.traffic.users import SimulatedUsers


def test_requests_come_from_logged_users_with_their_context(small_sim: Path) -> None:
    users = SimulatedUsers.load(small_sim)
    rng = np.random.default_rng(1)
    reqs = [users.request(rng, users.end_ts + 5, 7) for _ in range(300)]
    logged = set(pq.read_table(small_sim / "impressions.parquet").column("user_id").to_pylist())
    assert {r["user_id"] for r in reqs} <= logged
    assert all(r["k"] == 7 and r["context"]["ts"] == users.end_ts + 5 for r in reqs)
    assert all({"country", "device"} <= set(r["context"]) for r in reqs)
    # users are drawn in proportion to their activity in the log
    drawn = [users.request(rng, 0, 1)["user_id"] for _ in range(5000)]
    order = np.argsort(users.weights)
    tenth = len(order) // 10
    top, bottom = set(users.user_ids[order[-tenth:]]), set(users.user_ids[order[:tenth]])
    share = {name: sum(u in group for u in drawn) / len(drawn)
             for name, group in (("top", top), ("bottom", bottom))}  # fmt: skip
    assert share["top"] == pytest.approx(users.weights[order[-tenth:]].sum(), abs=0.03)
    assert share["top"] > 2 * share["bottom"]


def test_outcomes_follow_the_oracle_and_position_bias(small_sim: Path) -> None:
    users = SimulatedUsers.load(small_sim)
    user, ts = int(users.user_ids[0]), users.end_ts
    videos = list(range(10))
    first, value = users.react(user, videos, ts, np.random.default_rng(3))
    again, _ = users.react(user, videos, ts, np.random.default_rng(3))
    assert first == again and value > 0  # seeded: the same outcomes
    examined = {p: 0 for p in range(10)}
    for seed in range(400):
        for o in users.react(user, videos, ts, np.random.default_rng(seed))[0]:
            examined[o.position] += 1
            assert o.watch_seconds >= 0 and (o.clicked or o.watch_seconds == 0)
    assert examined[0] > examined[9]  # top positions are looked at more
    outcomes, value = users.react(user, [10**9], ts, np.random.default_rng(0))
    assert outcomes == [] and value == 0.0  # a video the world never had: no outcome


def test_a_log_without_an_oracle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="oracle"):
        SimulatedUsers.load(tmp_path)
