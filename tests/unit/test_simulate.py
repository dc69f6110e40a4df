"""The simulator: determinism, invariants of its logs, and the behaviours it models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from helpers import impressions_with_clicks
from vidrec.config import DAY, T0, sim_config
from vidrec.data.oracle import Oracle, click_probability
from vidrec.data.schema import check_dataset
from vidrec.data.simulate import NEW_MARKET, _rank_exploit_slots, simulate


def _digest(root: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    cfg = sim_config("small", {"days": 3})
    simulate(cfg, "none", 5, tmp_path / "a")
    simulate(cfg, "none", 5, tmp_path / "b")
    simulate(cfg, "none", 6, tmp_path / "c")
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert a["impressions.parquet"] != c["impressions.parquet"]


def test_logs_obey_causality(small_sim: Path) -> None:
    con = duckdb.connect()
    q = lambda sql: con.execute(sql.format(d=small_sim)).fetchall()[0][0]  # noqa: E731
    # nobody is shown anything before signing up, nor a video before its upload
    assert (
        q(
            "SELECT count(*) FROM '{d}/impressions.parquet' i JOIN '{d}/users.parquet' u "
            "USING (user_id) WHERE i.ts < u.signup_ts"
        )
        == 0
    )
    assert (
        q(
            "SELECT count(*) FROM '{d}/impressions.parquet' i JOIN '{d}/videos.parquet' v "
            "USING (video_id) WHERE i.ts < v.upload_ts"
        )
        == 0
    )
    # every watch answers an impression, starts after it and is labelled after it ends
    assert (
        q(
            "SELECT count(*) FROM '{d}/watches.parquet' w ANTI JOIN '{d}/impressions.parquet' i "
            "USING (request_id, video_id)"
        )
        == 0
    )
    assert (
        q(
            "SELECT count(*) FROM '{d}/watches.parquet' w JOIN '{d}/impressions.parquet' i "
            "USING (request_id, video_id) WHERE NOT (i.ts < w.start_ts AND "
            "w.start_ts + w.watch_seconds::DOUBLE <= w.label_ts)"
        )
        == 0
    )
    # propensities are probabilities; slates have no duplicate video
    assert (
        q("SELECT count(*) FROM '{d}/impressions.parquet' WHERE propensity <= 0 OR propensity > 1")
        == 0
    )
    assert (
        q(
            "SELECT count(*) FROM (SELECT request_id, video_id FROM '{d}/impressions.parquet' "
            "GROUP BY ALL HAVING count(*) > 1)"
        )
        == 0
    )
    check_dataset(small_sim)  # the documented schema holds


def test_position_bias_follows_the_examination_model(small_sim: Path) -> None:
    imp = impressions_with_clicks(small_sim)
    oracle = Oracle.load(small_sim / "oracle")
    imp["p_click"] = click_probability(
        oracle, imp.user_id.to_numpy(), imp.video_id.to_numpy(), imp.ts.to_numpy()
    )
    by_pos = imp.groupby("position")[["click", "p_click"]].sum()
    examined = by_pos.click / by_pos.p_click  # clicks per expected click if always examined
    expected = (1.0 + by_pos.index.to_numpy()) ** -oracle.examination_decay
    assert np.allclose(examined.to_numpy(), expected, rtol=0.12), examined


def test_slates_are_ranked_by_popularity(small_sim: Path) -> None:
    imp = pd.read_parquet(small_sim / "impressions.parquet", columns=["position", "propensity"])
    mean_p = imp.groupby("position")["propensity"].mean()
    # the logging policy puts its most popular picks first
    assert mean_p.iloc[0] > 2 * mean_p.iloc[-1]
    assert mean_p.iloc[:5].is_monotonic_decreasing


def test_rank_exploit_slots_leaves_exploration_in_place() -> None:
    idx = np.array([[5, 1, 2, 3], [0, 1, 2, 3], [4, 0, 5, 1]])
    explore = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=bool)
    p_pop = np.array([0.1, 0.2, 0.3, 0.05, 0.01, 0.34])
    got = _rank_exploit_slots(idx, explore, p_pop)
    assert got.tolist() == [[5, 1, 2, 3], [2, 1, 0, 3], [4, 1, 5, 0]]


def test_cold_start_arrivals(small_sim: Path) -> None:
    users = pd.read_parquet(small_sim / "users.parquet")
    videos = pd.read_parquet(small_sim / "videos.parquet")
    imp = pd.read_parquet(small_sim / "impressions.parquet", columns=["user_id", "video_id"])
    new_users = set(users.loc[users.signup_ts >= T0, "user_id"])
    new_videos = set(videos.loc[videos.upload_ts >= T0, "video_id"])
    assert new_users and new_videos
    assert new_users & set(imp.user_id)  # new users get served
    assert new_videos & set(imp.video_id)  # exploration shows new videos


def test_a_new_user_is_served_at_sign_up(small_sim: Path) -> None:
    users = pd.read_parquet(small_sim / "users.parquet", columns=["user_id", "signup_ts"])
    imp = pd.read_parquet(small_sim / "impressions.parquet", columns=["user_id", "ts"])
    new = users[users.signup_ts >= T0].set_index("user_id").signup_ts
    first = imp.groupby("user_id").ts.min().reindex(new.index)
    assert (first - new == 1).all()  # every one of them, one second after signing up


def test_oracle_is_kept_apart_and_explains_clicks(small_sim: Path) -> None:
    tables = {p.name for p in small_sim.glob("*.parquet")}
    assert tables == {"users.parquet", "videos.parquet", "impressions.parquet", "watches.parquet"}
    oracle = Oracle.load(small_sim / "oracle")
    imp = impressions_with_clicks(small_sim)
    rel = oracle.relevance(imp.user_id.to_numpy(), imp.video_id.to_numpy(), imp.ts.to_numpy())
    hi, lo = rel > np.quantile(rel, 0.8), rel < np.quantile(rel, 0.2)
    assert imp.click[hi].mean() > 3 * imp.click[lo].mean()


@pytest.mark.parametrize("scenario", ["new-market", "catalog-surge", "interest-shift"])
def test_scenarios_change_the_world_after_onset(tmp_path: Path, scenario: str) -> None:
    cfg = sim_config("small", {"days": 6, "scenario_day": 3})
    simulate(cfg, scenario, 3, tmp_path)  # type: ignore[arg-type]
    onset = T0 + 3 * DAY
    users = pd.read_parquet(tmp_path / "users.parquet")
    videos = pd.read_parquet(tmp_path / "videos.parquet")
    if scenario == "new-market":
        nm = users[users.country == NEW_MARKET]
        assert len(nm) > 0 and (nm.signup_ts >= onset).all()
    elif scenario == "catalog-surge":
        per_day = videos[videos.upload_ts >= T0].groupby((videos.upload_ts - T0) // DAY).size()
        assert per_day.loc[3:5].mean() > 3 * per_day.loc[0:2].mean()
    else:
        o = Oracle.load(tmp_path / "oracle")
        u, v = np.arange(len(users)), np.zeros(len(users), dtype=int)
        before = o.relevance(u, v, np.full(len(u), onset - 1))
        after = o.relevance(u, v, np.full(len(u), onset))
        changed = ~np.isclose(before, after)
        assert changed[o.shifted].mean() > 0.9 and not changed[~o.shifted].any()
        # a shifted user's new interests are unrelated to the old: orthogonal unit vectors
        cos = (o.interest[o.shifted] * o.interest_after[o.shifted]).sum(axis=1)
        assert np.abs(cos).max() < 1e-5
        assert np.allclose(np.linalg.norm(o.interest_after, axis=1), 1, atol=1e-5)
