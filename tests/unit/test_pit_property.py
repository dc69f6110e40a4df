"""The fast point-in-time join equals a plain, obviously-correct reference join.

Random event logs over a tiny time range, so timestamps tie often, labels
arrive late (after later events), windows start and end exactly on facts, and
snapshots (refresh) fall between events. The reference is a loop over facts
per row: no SQL, no cumulative sums, no ASOF.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidrec.features.pit import PointInTime, as_of_value
from vidrec.features.spec import BatchFeature, Entity, FeatureSet, Source

USER, VIDEO, CREATOR = (
    Entity("user", ("user_id",)),
    Entity("video", ("video_id",)),
    Entity("creator", ("creator_id",)),
)
WATCHES = Source(
    "watches",
    "SELECT w.user_id, w.video_id, v.creator_id, w.start_ts, w.label_ts, "
    "w.watch_seconds FROM watches w JOIN videos v USING (video_id)",
    "label_ts",
)
VIDEOS = Source("videos", "SELECT video_id, creator_id, upload_ts FROM videos", "upload_ts")
WIN_A, WIN_B = 5, 20
LAST_N = 3

FS = FeatureSet(
    name="property",
    batch=(
        BatchFeature("video_creator", VIDEO, VIDEOS, "latest", "creator_id", None, "float64", None),
        BatchFeature("u_count_a", USER, WATCHES, "count", None, WIN_A, "int64"),
        BatchFeature("u_count_b", USER, WATCHES, "count", None, WIN_B, "int64"),
        BatchFeature("u_count_all", USER, WATCHES, "count", None, None, "int64"),
        BatchFeature("u_sum_a", USER, WATCHES, "sum", "watch_seconds", WIN_A),
        BatchFeature("c_count_b", CREATOR, WATCHES, "count", None, WIN_B, "int64"),
        BatchFeature(
            "u_last", USER, WATCHES, "last_n", "video_id", None, "list", None, freshness="realtime"
        ),
    ),
    transforms=(),
    request_columns={"ts": "int64", "user_id": "int64", "video_id": "int64"},
    model_inputs=(),
    derived_keys={"creator_id": ("video", "video_creator")},
)

watch = st.tuples(
    st.integers(0, 2),
    st.integers(0, 2),
    st.integers(0, 40),
    st.integers(0, 12),
    st.sampled_from([0.5, 1.0, 2.25, 7.125, 30.0]),
)
video = st.tuples(st.integers(0, 1), st.integers(0, 25))  # creator, upload_ts
row = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 60))  # ids 3: unknown


def reference(
    rows: list[tuple[int, int, int]],
    videos: list[tuple[int, int]],
    watches: list[tuple[int, int, int, int, float]],
    refresh: int,
) -> list[dict[str, Any]]:
    out = []
    for user, vid, ts in rows:
        at = as_of_value(refresh, ts)
        r: dict[str, Any] = {}
        creator = None
        if vid < len(videos) and videos[vid][1] < at:
            creator = videos[vid][0]
        r["video_creator"] = creator
        # a watch is a fact from its label time on
        facts = [(w, s + d) for w in watches for (u, _v, s, d, _x) in [w] if u == user]
        before = [(w, t) for w, t in facts if t < at]
        some = bool(before)
        r["u_count_a"] = sum(1 for _, t in before if t >= at - WIN_A) if some else None
        r["u_count_b"] = sum(1 for _, t in before if t >= at - WIN_B) if some else None
        r["u_count_all"] = len(before) if some else None
        r["u_sum_a"] = sum(w[4] for w, t in before if t >= at - WIN_A) if some else None
        r["__src_user"] = max((t for _, t in before), default=None)
        cfacts = [
            s + d
            for (u, v, s, d, _x) in watches
            if creator is not None and videos[v][0] == creator and s + d < at
        ]
        r["c_count_b"] = sum(1 for t in cfacts if t >= at - WIN_B) if cfacts else None
        hist = sorted((s + d, v) for (u, v, s, d, _x) in watches if u == user and s + d < ts)
        r["u_last"] = [v for _, v in hist][-LAST_N:]
        out.append(r)
    return out


def engine(
    rows: list[tuple[int, int, int]],
    videos: list[tuple[int, int]],
    watches: list[tuple[int, int, int, int, float]],
    refresh: int,
) -> pd.DataFrame:
    con = duckdb.connect()
    con.register(
        "videos",
        pd.DataFrame(
            {
                "video_id": range(len(videos)),
                "creator_id": [c for c, _ in videos],
                "upload_ts": [u for _, u in videos],
            }
        ).astype("int64"),
    )
    con.register(
        "watches",
        pd.DataFrame(
            [(u, v, s, s + d, x) for u, v, s, d, x in watches],
            columns=["user_id", "video_id", "start_ts", "label_ts", "watch_seconds"],
        ).astype(
            {
                "user_id": "int64",
                "video_id": "int64",
                "start_ts": "int64",
                "label_ts": "int64",
                "watch_seconds": "float64",
            }
        ),
    )
    con.register(
        "q",
        pd.DataFrame(
            [(i, u, v, t, as_of_value(refresh, t)) for i, (u, v, t) in enumerate(rows)],
            columns=["qid", "user_id", "video_id", "ts", "as_of"],
        ).astype("int64"),
    )
    pit = PointInTime(con, FS, LAST_N)
    return con.execute(pit.select("q")).df().sort_values("qid").reset_index(drop=True)


@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    videos=st.lists(video, min_size=3, max_size=3),
    watches=st.lists(watch, min_size=0, max_size=25),
    rows=st.lists(row, min_size=1, max_size=12),
    refresh=st.sampled_from([0, 7]),
)
def test_engine_equals_reference(
    videos: list[tuple[int, int]],
    watches: list[tuple[int, int, int, int, float]],
    rows: list[tuple[int, int, int]],
    refresh: int,
) -> None:
    got = engine(rows, videos, watches, refresh)
    want = reference(rows, videos, watches, refresh)
    user_src = next(
        g.src
        for g in PointInTime(duckdb.connect(), FS, LAST_N).groups
        if g.key[0] == "user" and g.kind == "agg"
    )
    for i, w in enumerate(want):
        g = got.iloc[i]
        for name in ("u_count_a", "u_count_b", "u_count_all", "c_count_b"):
            assert _val(g[name]) == w[name], (name, i, rows[i])
        assert (
            _val(g["u_sum_a"]) is None
            if w["u_sum_a"] is None
            else abs(g["u_sum_a"] - w["u_sum_a"]) < 1e-9
        ), ("u_sum_a", i)
        assert _val(g["video_creator"]) == w["video_creator"], ("video_creator", i)
        assert _val(g[user_src]) == w["__src_user"], ("availability", i)
        assert _ids(g["u_last"]) == w["u_last"], ("u_last", i, rows[i])


def _ids(v: Any) -> list[int]:
    return (
        []
        if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v))
        else [int(x) for x in v]
    )


def _val(v: Any) -> Any:
    return None if v is None or pd.isna(v) else int(v) if float(v).is_integer() else v
