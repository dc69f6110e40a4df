"""The point-in-time join done the naive pandas way: merge, filter by time, group.

Two jobs: the baseline `vidrec bench features` measures the DuckDB engine
against, and a second, independent implementation of the same declarations
that tests cross-check it with. It compares every row with every fact of its
key, so it is only ever run on a sample of rows.
"""

from __future__ import annotations

import time
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from vidrec.config import FeatureConfig
from vidrec.data.validate import OpenDataset
from vidrec.features.pit import Group, PointInTime, groups_of
from vidrec.features.spec import FeatureSet
from vidrec.features.transform import finish


def load_facts(con: duckdb.DuckDBPyConnection, g: Group, rows: pd.DataFrame) -> pd.DataFrame:
    """The group's source rows for the keys present in `rows` (loading is not timed)."""
    f0 = g.features[0]
    keys = list(g.entity_keys)
    con.register("__naive_keys", rows[keys].drop_duplicates())
    try:
        return con.execute(
            f"SELECT s.* FROM ({f0.source.sql}) s SEMI JOIN __naive_keys k "
            f"USING ({', '.join(keys)})"
        ).df()
    finally:
        con.unregister("__naive_keys")


def join_group(rows: pd.DataFrame, g: Group, facts: pd.DataFrame, last_n: int) -> pd.DataFrame:
    """One group's columns for every row of `rows` (indexed by __rid)."""
    f0 = g.features[0]
    at = "ts" if g.realtime else "as_of"
    t, avail = f0.join_time, f0.source.available_at
    m = rows[["__rid", *g.entity_keys, at]].merge(facts, on=list(g.entity_keys))
    m = m[m[t] < m[at]]
    out = pd.DataFrame(index=pd.Index(rows["__rid"], name="__rid"))
    out[g.src] = m.groupby("__rid")[avail].max()
    if g.kind == "attr":
        last = m.sort_values(t, kind="stable").groupby("__rid").tail(1).set_index("__rid")
        for f in g.features:
            out[f.name] = last[f.column]
    elif g.kind == "hist":
        (f,) = g.features
        s = m.sort_values([t, f.column], kind="stable")
        out[f.name] = s.groupby("__rid")[f.column].agg(lambda v: list(v)[-last_n:])
    else:
        for f in g.features:
            sub = m if f.window_s is None else m[m[t] >= m[at] - f.window_s]
            grouped = sub.groupby("__rid")
            val = grouped.size() if f.agg == "count" else grouped[f.column].sum()
            # a key with facts before as_of but none in the window counts 0, like the engine
            out[f.name] = val.reindex(out.index)
            out.loc[out[g.src].notna() & out[f.name].isna(), f.name] = 0
    return out


def naive_join(
    con: duckdb.DuckDBPyConnection, fs: FeatureSet, rows: pd.DataFrame, last_n: int
) -> tuple[pd.DataFrame, float]:
    """Raw feature columns for `rows` and the seconds spent in pandas (loads excluded)."""
    out = rows.reset_index(drop=True).copy()
    out["__rid"] = np.arange(len(out))
    spent = 0.0
    for g in groups_of(fs):  # attribute groups first: they provide derived keys
        facts = load_facts(con, g, out) if all(k in out for k in g.entity_keys) else None
        if facts is None:
            continue
        t0 = time.perf_counter()
        cols = join_group(out, g, facts, last_n)
        out = out.join(cols, on="__rid")
        for key, (_e, attr) in fs.derived_keys.items():
            if attr in cols:
                out[key] = out[attr].map(lambda v: None if pd.isna(v) else v)
                if fs.by_name(attr).dtype != "str":
                    out[key] = out[key].astype("Int64")
        spent += time.perf_counter() - t0
    return out.drop(columns="__rid"), spent


# sample rows joined the naive way at once: each meets every fact of its keys, so memory holds
# the chunk times a popular video's impressions (20,000 demo-scale rows at once took > 24 GB)
NAIVE_CHUNK = 1_000


def engine_vs_naive(
    ds: OpenDataset,
    cfg: FeatureConfig,
    fs: FeatureSet,
    n_rows: int,
    seed: int,
    chunk: int = NAIVE_CHUNK,
) -> dict[str, Any]:
    """Join one random sample of training rows both ways (the naive way `chunk` rows at a
    time); per-feature differences + timings."""
    from vidrec.features.skew import compare
    from vidrec.features.training_set import default_build_ts, rows_sql

    rows = ds.con.execute(
        "SELECT request_id, ts, as_of, user_id, video_id, device, session_position FROM "
        f"({rows_sql(cfg, default_build_ts(ds))}) USING SAMPLE {n_rows} ROWS "
        f"(reservoir, {seed})"
    ).df()
    parts = [naive_join(ds.con, fs, rows.iloc[i : i + chunk], cfg.last_n)
             for i in range(0, len(rows), chunk)]  # fmt: skip
    naive = pd.concat([p for p, _ in parts], ignore_index=True)
    naive_s = sum(s for _, s in parts)
    ds.con.register("__sample_rows", rows)
    t0 = time.perf_counter()
    engine = ds.con.execute(PointInTime(ds.con, fs, cfg.last_n).select("__sample_rows")).df()
    engine_s = time.perf_counter() - t0
    names = fs.feature_names()
    return {
        "rows": len(rows),
        "naive_seconds": naive_s,
        "engine_seconds": engine_s,
        "features": compare(finish(engine, fs), finish(naive, fs), names),
    }
