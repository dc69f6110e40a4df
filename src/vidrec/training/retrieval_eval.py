"""Offline evaluation of retrieval: Recall@K of two-tower+ANN, exact search and popularity.

For sampled test requests, the user tower embeds the user as of the request
(point-in-time features of the logged request), the index returns the top K
videos already uploaded at that time, and recall is measured against:
- `true`: the 50 most relevant eligible videos by the simulator's oracle;
- `fresh`: the 10 most relevant videos uploaded in the last `fresh_days`
  (cold items: only their content embedding can find them);
- `clicks`: the videos the user clicked in that request (what an operator has;
  biased towards what the old policy showed, i.e. towards popularity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.data.oracle import Oracle
from vidrec.models.ann import AnnIndex
from vidrec.models.exact import ExactIndex
from vidrec.models.two_tower import Towers, videos_as_features
from vidrec.training.baselines import Popularity
from vidrec.training.metrics import recall_at_k

Array = npt.NDArray[Any]
KS = (100, 500)
TRUE_TOP, FRESH_TOP = 50, 10
CONTEXT = ("request_id", "ts", "user_id", "device", "session_position")


@dataclass
class Requests:
    """One row per sampled test request: its user features and the videos it clicked."""

    frame: pd.DataFrame
    clicked: list[set[int]]

    @classmethod
    def sample(cls, test: pd.DataFrame, n: int, seed: int) -> Requests:
        clicked = test[test.label_click > 0].groupby("request_id").video_id.agg(set)
        first = test.sort_values(["request_id", "position"]).drop_duplicates("request_id")
        frame = first.sample(min(n, len(first)), random_state=seed).sort_values("request_id")
        return cls(frame, [clicked.get(r, set()) for r in frame.request_id])


def retrieve(
    index: AnnIndex, queries: Array, ts: Array, upload_ts: pd.Series, k: int
) -> list[list[int]]:
    """Top k per query among videos uploaded before the request (over-fetch, then filter)."""
    future = int((upload_ts.to_numpy() > ts.min()).sum())
    ids, _ = index.search(queries, min(k + future, len(index)))
    up = upload_ts.reindex(ids.ravel()).to_numpy().reshape(ids.shape)
    rows = zip(ids, up, ts, strict=True)
    return [[int(v) for v in row[(row >= 0) & (u <= t)][:k]] for row, u, t in rows]


def fresh_lists(
    towers: Towers,
    videos: pd.DataFrame,
    users: Array,
    ts: Array,
    fresh_s: float,
    n: int,
    exclude: list[list[int]] | None = None,
) -> list[list[int]]:
    """Per query, the n nearest videos uploaded in the fresh_s before it (a small exact
    index of recent uploads, as serving's exploration pool), minus `exclude`d ids."""
    upload = videos.set_index("video_id").upload_ts
    recent = videos[videos.upload_ts >= ts.min() - fresh_s]
    if not len(recent):
        return [[] for _ in ts]
    index = ExactIndex(users.shape[1])
    index.add(recent.video_id.to_numpy(), towers.embed_items(videos_as_features(recent)))
    found = retrieve(index, users, ts, upload, len(recent))
    skip = [set(ex) for ex in exclude] if exclude else [set()] * len(ts)
    return [
        [v for v in row if upload[v] >= t - fresh_s and v not in ex][:n]
        for row, t, ex in zip(found, ts, skip, strict=True)
    ]


def candidate_rows(f: pd.DataFrame, lists: list[list[int]]) -> pd.DataFrame:
    """One row per (request, candidate video) with the request's context."""
    counts = [len(x) for x in lists]
    rows = pd.DataFrame(
        {
            **{c: np.repeat(f[c].to_numpy(), counts) for c in CONTEXT},
            "video_id": np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]),
        }
    )
    return rows


def relevant_sets(
    oracle: Oracle, req: pd.DataFrame, videos: pd.DataFrame, fresh_s: float
) -> tuple[list[set[int]], list[set[int]]]:
    vid, up = videos.video_id.to_numpy(np.int64), videos.upload_ts.to_numpy(np.int64)
    true, fresh = [], []
    for uid, ts in zip(req.user_id.to_numpy(), req.ts.to_numpy(), strict=True):
        ok = up <= ts
        cand, cand_up = vid[ok], up[ok]
        rel = oracle.relevance(np.full(len(cand), uid), cand, np.full(len(cand), ts))
        order = np.lexsort((cand, -rel))  # ties by id: no dependence on table order
        true.append(set(cand[order[:TRUE_TOP]].tolist()))
        is_fresh = cand_up[order] >= ts - fresh_s
        fresh.append(set(cand[order][is_fresh][:FRESH_TOP].tolist()))
    return true, fresh


def evaluate_retrieval(
    towers: Towers,
    indexes: dict[str, AnnIndex],
    popularity: Popularity,
    req: Requests,
    videos: pd.DataFrame,
    oracle: Oracle | None,
    fresh_s: float,
) -> dict[str, dict[str, float]]:
    users = towers.embed_users(req.frame)
    ts = req.frame.ts.to_numpy(np.int64)
    upload = videos.set_index("video_id").upload_ts
    got = {name: retrieve(index, users, ts, upload, max(KS)) for name, index in indexes.items()}
    got["popularity"] = [
        popularity.recommend((str(c), str(a)), max(KS))
        for c, a in zip(req.frame.user_country, req.frame.user_age_bucket, strict=True)
    ]
    targets: dict[str, list[set[int]]] = {"clicks": req.clicked}
    if oracle is not None:
        targets["true"], targets["fresh"] = relevant_sets(oracle, req.frame, videos, fresh_s)
    report = {
        name: {
            f"recall{k}_{t}": round(recall_at_k(lists, rel, k), 4)
            for t, rel in targets.items()
            for k in KS
        }
        for name, lists in got.items()
    }
    exact = next((n for n, i in indexes.items() if i.kind == "exact"), None)
    if exact is not None:
        for name in indexes:
            report[name]["overlap500_vs_exact"] = round(
                recall_at_k(got[name], [set(x) for x in got[exact]], max(KS)), 4
            )
    return report
