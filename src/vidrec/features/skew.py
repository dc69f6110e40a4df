"""Training-serving skew check: the online vector must equal the offline one.

Takes a deterministic sample of logged requests from a few snapshot windows.
For each window it materialises the online store at the snapshot time (as the
refresh job would), computes every sampled request's vector through the
online path (store lookups, derived keys, realtime history, `finish`), and
compares it with the vector the training-set builder produces for the same
impression. Any difference is skew; the report gives the worst per feature.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vidrec.config import FeatureConfig
from vidrec.data.validate import open_dataset, scalar
from vidrec.errors import InvalidInput
from vidrec.features.definitions import FEATURES
from vidrec.features.materialize import load_history, materialize
from vidrec.features.online import OnlineFeatures
from vidrec.features.pit import PointInTime, as_of_expr
from vidrec.features.spec import FeatureSet
from vidrec.features.store import open_store
from vidrec.features.transform import finish

KEY = ["request_id", "video_id"]


def _norm(v: Any) -> Any:
    """Lists from Arrow arrive as arrays, from the store as lists: compare contents."""
    return [int(i) for i in v] if isinstance(v, list | tuple | np.ndarray) else v


def compare(offline: pd.DataFrame, online: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """Per feature: max |offline - online| (numeric) or mismatch count (others)."""
    a = offline.sort_values(KEY).reset_index(drop=True)
    b = online.sort_values(KEY).reset_index(drop=True)
    if len(a) != len(b) or not (a[KEY].to_numpy() == b[KEY].to_numpy()).all():
        raise AssertionError("offline and online samples are not the same rows")
    report: dict[str, Any] = {}
    for n in names:
        x, y = a[n], b[n]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xf, yf = x.to_numpy(np.float64), y.to_numpy(np.float64)
            both_nan = np.isnan(xf) & np.isnan(yf)
            diff = np.where(both_nan, 0.0, np.abs(xf - yf))
            diff = np.where(np.isnan(diff), np.inf, diff)
            report[n] = {
                "max_abs_diff": float(diff.max(initial=0.0)),
                "mismatches": int((diff > 0).sum()),
                "nonzero": int(((xf != 0) & ~np.isnan(xf)).sum()),
            }
        else:
            bad = sum(1 for p, q in zip(x, y, strict=True) if _norm(p) != _norm(q))
            report[n] = {"max_abs_diff": 0.0 if bad == 0 else float("inf"), "mismatches": bad}
    return report


def check_skew(
    data: Path,
    cfg: FeatureConfig,
    fs: FeatureSet = FEATURES,
    sample: int = 2000,
    snapshots: int = 3,
    seed: int = 0,
    store_lag_s: int = 0,
) -> dict[str, Any]:
    """`store_lag_s` > 0 materialises that much too early: a stale online store, i.e.
    real skew, which the check must report."""
    t0 = time.perf_counter()
    ds = open_dataset(data, cfg)
    con = ds.con
    pit = PointInTime(con, fs, cfg.last_n)
    pit.prepare()
    as_of = as_of_expr(cfg.refresh_seconds)
    windows = [
        int(r[0])
        for r in con.execute(
            f"SELECT DISTINCT {as_of} AS w FROM impressions ORDER BY hash(w + {seed}) "
            f"LIMIT {snapshots}"
        ).fetchall()
    ]
    if not windows:
        raise InvalidInput(
            f"{data}: no valid impressions to sample for the skew check", file=str(data)
        )
    per = max(1, sample // len(windows))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __sample AS SELECT * FROM ("
        f"SELECT request_id, ts, {as_of}::BIGINT AS as_of, user_id, video_id, device, "
        f"session_position, row_number() OVER (PARTITION BY {as_of} "
        f"ORDER BY hash(request_id * 7919 + video_id + {seed})) AS rn FROM impressions "
        f"WHERE {as_of} IN ({', '.join(map(str, windows))})) WHERE rn <= {per}"
    )
    offline = finish(con.sql(pit.select("__sample")).df(), fs)

    store = open_store(cfg.online_store)
    try:
        load_history(con, store, pit, int(scalar(con, "SELECT max(ts) FROM __sample")) + 1)
        online_parts = []
        service = OnlineFeatures(store, fs, cfg.last_n)
        for w in sorted(windows):
            materialize(pit, store, w - store_lag_s)
            req = con.execute(
                f"SELECT request_id, ts, user_id, video_id, device, "
                f"session_position FROM __sample WHERE as_of = {w}"
            ).df()
            online_parts.append(service.frame(req))
        online = pd.concat(online_parts, ignore_index=True)
    finally:
        store.close()

    names = fs.feature_names()
    report = compare(offline, online, names)
    worst = max((r["max_abs_diff"] for r in report.values()), default=0.0)
    return {
        "requests": int(offline["request_id"].nunique()),
        "rows": len(offline),
        "snapshots": sorted(windows),
        "store_lag_s": store_lag_s,
        "online_store": cfg.online_store.split("://")[0],
        "features": report,
        "max_abs_diff": worst,
        "mismatched_features": sorted(n for n, r in report.items() if r["mismatches"]),
        "passed": worst == 0.0,
        "seconds": round(time.perf_counter() - t0, 3),
    }
