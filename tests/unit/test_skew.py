"""Online and offline feature vectors are equal; a stale store is caught as skew."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidrec.config import FeatureConfig
from vidrec.features.skew import check_skew


@pytest.mark.parametrize("refresh", [3600, 0])
def test_online_equals_offline(small_sim: Path, refresh: int) -> None:
    r = check_skew(small_sim, FeatureConfig(refresh_seconds=refresh), sample=1200, snapshots=4)
    assert r["rows"] >= 40
    assert r["passed"] and r["max_abs_diff"] == 0.0 and r["mismatched_features"] == []
    if refresh:
        # the comparison is about real values, not defaults on both sides
        for name in ("video_impressions_7d", "user_watches_28d", "video_ctr_7d", "video_age_hours"):
            assert r["features"][name]["nonzero"] > 0, name


def test_a_stale_store_is_reported_as_skew(small_sim: Path) -> None:
    r = check_skew(small_sim, FeatureConfig(), sample=1200, snapshots=4, store_lag_s=86_400)
    assert not r["passed"]
    assert "video_impressions_1d" in r["mismatched_features"]
    # request-time features come from the request, not the store
    assert "hour_of_day" not in r["mismatched_features"]
    assert "device_code" not in r["mismatched_features"]


def test_no_impressions_is_a_clear_input_error(small_sim: Path, tmp_path: Path) -> None:
    import shutil

    import pyarrow.parquet as pq

    from vidrec.errors import InvalidInput

    data = tmp_path / "empty"
    shutil.copytree(small_sim, data)
    imp = pq.read_table(data / "impressions.parquet")
    pq.write_table(imp.slice(0, 0), data / "impressions.parquet")
    with pytest.raises(InvalidInput, match="no valid impressions") as err:
        check_skew(data, FeatureConfig(), sample=10)
    assert err.value.http_status == 400
