"""The skew check through a real Redis online store."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidrec.config import FeatureConfig
from vidrec.features.skew import check_skew

pytestmark = pytest.mark.integration


def test_skew_is_zero_through_redis(small_sim: Path, redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    r = check_skew(small_sim, FeatureConfig(online_store=redis_url), sample=800, snapshots=3)
    assert r["online_store"] == "redis"
    assert r["passed"] and r["mismatched_features"] == []
    assert r["features"]["video_impressions_7d"]["nonzero"] > 0
