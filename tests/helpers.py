"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def impressions_with_clicks(sim: Path) -> pd.DataFrame:
    """The simulated impressions with a 0/1 `click` column joined from the watches."""
    imp = pd.read_parquet(sim / "impressions.parquet")
    w = pd.read_parquet(sim / "watches.parquet", columns=["request_id", "video_id"])
    clicked = imp.merge(w.assign(c=1), how="left", on=["request_id", "video_id"])["c"]
    return imp.assign(click=clicked.fillna(0).to_numpy(dtype=float))
