"""The training set: settled labels only, delayed labels respected, same rows every build."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vidrec.config import FeatureConfig
from vidrec.errors import InvalidInput
from vidrec.features.training_set import build_training_set

KEY = ["request_id", "video_id"]


def test_labels_are_those_known_at_build_time(small_sim: Path, tmp_path: Path) -> None:
    cfg = FeatureConfig(label_horizon_s=300)  # shorter than many watches
    imp = pd.read_parquet(small_sim / "impressions.parquet")
    wat = pd.read_parquet(small_sim / "watches.parquet")
    # pretend "now" is ten minutes into the longest watch: its label is not known yet
    longest = wat.loc[wat.watch_seconds.idxmax()]
    assert longest.watch_seconds > 1200
    build_ts = int(longest.start_ts) + 600
    s = build_training_set(small_sim, tmp_path / "t.parquet", cfg, build_ts=build_ts)
    got = pd.read_parquet(tmp_path / "t.parquet", columns=[*KEY, "ts", "label_click"])

    settled = imp[imp.ts <= build_ts - cfg.label_horizon_s]
    assert s["rows"] == len(settled) == len(got)
    assert s["label_pending"] == int((imp.ts > build_ts - cfg.label_horizon_s).sum())
    known = wat[wat.label_ts <= build_ts][KEY].drop_duplicates().assign(known=1)
    want = settled[KEY].merge(known, how="left", on=KEY).fillna({"known": 0})
    merged = got.merge(want, on=KEY)
    assert (merged.label_click == merged.known).all()
    # clicks whose label arrived after the build are negatives: the price of a short horizon
    late = wat[(wat.start_ts <= build_ts) & (wat.label_ts > build_ts)][KEY]
    assert len(late.merge(got, on=KEY)) > 0
    assert (late.merge(got, on=KEY).label_click == 0).all()


def test_rebuild_gives_the_same_rows(small_sim: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        build_training_set(small_sim, tmp_path / f"{name}.parquet", FeatureConfig())
    a = pd.read_parquet(tmp_path / "a.parquet").sort_values(KEY).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "b.parquet").sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert not a.duplicated(KEY).any()


def test_features_for_any_rows_equal_the_training_set(small_sim: Path, tmp_path: Path) -> None:
    """Candidates scored offline go through the same join and transforms as training rows,
    including pairs that were never shown (swapped videos)."""
    from vidrec.features.definitions import FEATURES
    from vidrec.features.training_set import features_for

    build_training_set(small_sim, tmp_path / "t.parquet", FeatureConfig())
    rows = pd.read_parquet(tmp_path / "t.parquet").sample(500, random_state=3)
    ctx = ["request_id", "ts", "user_id", "video_id", "device", "session_position"]
    got = features_for(small_sim, FeatureConfig(), rows[ctx])
    want = rows.sort_values(KEY).reset_index(drop=True)
    assert len(got) == 500
    for name in FEATURES.model_inputs:
        pd.testing.assert_series_equal(got[name], want[name], check_names=False)
    # an unshown pair: another request's video gets its own features, not the row's
    swapped = rows[ctx].assign(video_id=rows.video_id.to_numpy()[::-1])
    other = features_for(small_sim, FeatureConfig(), swapped)
    assert not other.video_impressions_7d.equals(got.video_impressions_7d)


def test_a_build_with_no_rows_says_why_and_writes_nothing(small_sim: Path, tmp_path: Path) -> None:
    """As of the first impression every label is still open: no row qualifies. The summary
    named a file that was never written, and training then failed reading it."""
    first = int(pd.read_parquet(small_sim / "impressions.parquet", columns=["ts"]).ts.min())
    out = tmp_path / "t.parquet"
    with pytest.raises(InvalidInput, match=f"no training rows as of build_ts {first}") as err:
        build_training_set(small_sim, out, FeatureConfig(), build_ts=first)
    assert "still wait for their labels" in err.value.message and err.value.http_status == 400
    assert not out.exists() and not out.with_suffix(".partial").exists()
