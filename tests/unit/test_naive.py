"""Two independent implementations of the declarations agree on real data."""

from __future__ import annotations

from pathlib import Path

from vidrec.config import FeatureConfig
from vidrec.data.validate import open_dataset
from vidrec.features.definitions import FEATURES
from vidrec.features.naive import naive_join
from vidrec.features.pit import PointInTime
from vidrec.features.skew import compare
from vidrec.features.training_set import default_build_ts, rows_sql
from vidrec.features.transform import finish


def test_naive_pandas_join_agrees_with_the_engine(small_sim: Path) -> None:
    cfg = FeatureConfig()
    ds = open_dataset(small_sim, cfg)
    rows = ds.con.execute(
        f"SELECT request_id, ts, as_of, user_id, video_id, device, session_position FROM "
        f"({rows_sql(cfg, default_build_ts(ds))}) USING SAMPLE 400 ROWS (reservoir, 7)"
    ).df()
    naive, _ = naive_join(ds.con, FEATURES, rows, cfg.last_n)
    ds.con.register("r", rows)
    engine = ds.con.execute(PointInTime(ds.con, FEATURES, cfg.last_n).select("r")).df()
    names = [f.name for f in FEATURES.batch] + [t.name for t in FEATURES.transforms]
    report = compare(finish(engine, FEATURES), finish(naive, FEATURES), names)
    for name, r in report.items():
        spec = FEATURES.by_name(name)
        exact = getattr(spec, "agg", None) != "sum" and name not in (
            "video_watch_share_7d",
            "user_category_share_28d",
        )
        # sums: the engine is exact to 1e-3 per fact (DECIMAL); pandas sums float32 values
        assert r["max_abs_diff"] <= (0 if exact else 0.05), (name, r)
    assert report["video_impressions_7d"]["nonzero"] > 0
