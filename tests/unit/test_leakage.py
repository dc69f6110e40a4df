"""The leakage guard refuses a feature that reads facts not yet available."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vidrec.config import FeatureConfig
from vidrec.errors import LeakageError
from vidrec.features import guard
from vidrec.features.definitions import FEATURES
from vidrec.features.leaky import LEAKY, leaky_feature_set
from vidrec.features.pit import groups_of
from vidrec.features.training_set import build_training_set

ONE_DAY = "AND i.ts < (SELECT min(ts) + 86400 FROM impressions)"


def test_leaky_definition_fails_the_build_naming_the_feature(
    small_sim: Path, tmp_path: Path, feature_cfg: FeatureConfig
) -> None:
    with pytest.raises(LeakageError) as err:
        build_training_set(
            small_sim, tmp_path / "t.parquet", feature_cfg, fs=leaky_feature_set(), where=ONE_DAY
        )
    assert err.value.details["features"] == [LEAKY.name]
    assert LEAKY.name in err.value.message and "label_ts" in err.value.message
    assert err.value.http_status == 422
    assert not (tmp_path / "t.parquet").exists() and not (tmp_path / "t.partial").exists()


def test_the_same_slice_builds_with_the_correct_definitions(
    small_sim: Path, tmp_path: Path, feature_cfg: FeatureConfig
) -> None:
    summary = build_training_set(small_sim, tmp_path / "t.parquet", feature_cfg, where=ONE_DAY)
    assert summary["rows"] > 1000
    frame = pd.read_parquet(tmp_path / "t.parquet")
    # every value's source precedes its prediction: recomputed from the output itself
    assert (frame["as_of"] <= frame["ts"]).all()


def test_guard_checks_availability_not_join_time() -> None:
    groups = groups_of(FEATURES)
    g = next(g for g in groups if g.kind == "agg")
    ok = pd.DataFrame({"ts": [100, 100], g.src: [99, None]})
    guard.check(ok, [g])
    bad = pd.DataFrame({"ts": [100, 100], g.src: [99, 100]})  # equal is not before
    with pytest.raises(LeakageError, match=g.features[0].name):
        guard.check(bad, [g])
