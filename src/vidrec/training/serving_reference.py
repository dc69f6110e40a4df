"""What the model will see at serving, replayed offline: the drift monitor's reference.

Training rows are logged impressions (what the old policy showed); serving
ranks the two-tower's retrieval candidates plus fresh videos, a different
population (other videos, other ages, other popularity). Comparing serving
with training rows would flag drift on day one. So this runs the serving path
offline - retrieve `serving.candidates` from the IVF index, add
`serving.fresh_candidates` recent uploads, point-in-time features from the same
pipeline, the chosen ranker - for the users and contexts of requests from the
log's last `train.reference_window_s`, as of the data's end (the snapshot the
online store holds), and counts the feature matrix into the training
reference's bins (`vidrec.features.bins`, the rule serving uses) and the candidates'
scores into the score bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.config import DAY, Settings
from vidrec.errors import SchemaError
from vidrec.features.bins import SCORE_EDGES, FeatureBins, score_bins
from vidrec.features.definitions import (
    FEATURES,
    REQUEST_INPUT_COLUMNS,
    REQUEST_INPUTS,
    as_float_matrix,
    one_per_user,
)
from vidrec.features.training_set import features_for
from vidrec.models.ann import AnnIndex
from vidrec.models.two_tower import Towers
from vidrec.training.retrieval_eval import CONTEXT, candidate_rows, fresh_lists, retrieve

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class ServedRows:
    """The model inputs and scores serving would have produced, one row per candidate."""

    request_id: Array
    x: Array  # model inputs, FEATURES.model_inputs order
    scores: Array
    video_id: Array | None = None  # each row's candidate


@dataclass(frozen=True)
class OfflineServing:
    """One trained model's serving path, run offline on a log's point-in-time features."""

    settings: Settings
    data: Path  # the log the features are joined from
    towers: Towers
    index: AnnIndex
    videos: pd.DataFrame
    ranker: Any

    def serve(self, frame: pd.DataFrame) -> ServedRows:
        """The serving path over `frame` (one row per request: its context)."""
        cfg, fcfg = self.settings.serving, self.settings.features
        # the user alone (video -1), as serving's retrieval reads it: features as of each ts
        users_f = features_for(self.data, fcfg, candidate_rows(frame, [[-1]] * len(frame)))
        ts = users_f.ts.to_numpy(np.int64)
        upload = self.videos.set_index("video_id").upload_ts
        users = self.towers.embed_users(users_f)
        main = retrieve(self.index, users, ts, upload, cfg.candidates)
        fresh = fresh_lists(self.towers, self.videos, users, ts, cfg.fresh_days * DAY,
                            cfg.fresh_candidates, exclude=main)  # fmt: skip
        lists = [m + x for m, x in zip(main, fresh, strict=True)]
        feats = features_for(self.data, fcfg, candidate_rows(users_f, lists))
        x = as_float_matrix(feats, FEATURES)
        return ServedRows(feats.request_id.to_numpy(), x, np.asarray(self.ranker.score(feats)),
                          feats.video_id.to_numpy())  # fmt: skip

    def units(self, rows: ServedRows) -> dict[str, int]:
        """Distinct videos and creators among `rows`' candidates: the most independent
        values a catalogue feature's histogram can hold (`CATALOGUE_UNITS`)."""
        videos = np.unique(rows.video_id if rows.video_id is not None else [])
        creators = self.videos.set_index("video_id").creator_id.reindex(videos).dropna()
        return {"video": len(videos), "creator": int(creators.nunique())}


def counts(rows: ServedRows, bins: FeatureBins, requests: int) -> dict[str, Any]:
    """Bin counts of the model inputs and of the scores of every candidate."""
    binned = bins.count(rows.x)
    return {
        "requests": requests,
        "rows": len(rows.x),
        "features": {n: {"counts": b.counts, "missing": b.missing} for n, b in binned.items()},
        "score": {"edges": list(SCORE_EDGES), "counts": score_bins(rows.scores).counts},
    }


def as_snapshot(frame: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    """Requests re-timed to `as_of` (one time, or one per request); the caller's feature
    join then reads the users as of that time.

    The online store is a snapshot: every user arrives with all of their history up to it.
    At their logged time the same users had less of it (a request's own watches come after
    it), so the reference serves recent users as of the snapshot, like the store does, and
    `vidrec traffic` draws its users from the same recent stretch of the log. What is
    compared is who arrives, not how far into their history they are."""
    return frame.assign(ts=np.broadcast_to(np.asarray(as_of, dtype=np.int64), len(frame)))


def logged_requests(data: Path, start: int, end: int | None = None) -> pd.DataFrame:
    """The log's requests (user and context, one row each) with ts in [start, end)."""
    upper = [("ts", "<", end)] if end is not None else []
    imp = pd.read_parquet(data / "impressions.parquet", columns=list(CONTEXT),
                          filters=[("ts", ">=", start), *upper])  # fmt: skip
    return imp.drop_duplicates("request_id")


def sample_requests(log: pd.DataFrame, start: int, end: int, n: int, seed: int) -> pd.DataFrame:
    """Up to n of `log`'s requests with ts in [start, end), sampled the way the reference
    draws its users."""
    pool = log[(log.ts >= start) & (log.ts < end)]
    return pool.sample(min(n, len(pool)), random_state=seed).sort_values("request_id")


def request_inputs(rows: ServedRows, frame: pd.DataFrame, seed: int) -> Array:
    """The REQUEST_INPUTS of one request per distinct user of `frame` (picked at random:
    a user's requests share these values), for the monitor's sample-based tests. Raises if
    one of them differs between a request's candidates (it would not be the request's)."""
    x = pd.DataFrame(rows.x[:, REQUEST_INPUT_COLUMNS], columns=list(REQUEST_INPUTS))
    x["request_id"] = rows.request_id
    per_request = x.groupby("request_id", sort=False)
    varying = [n for n in REQUEST_INPUTS if (per_request[n].nunique(dropna=False) > 1).any()]
    if varying:
        raise SchemaError(f"REQUEST_INPUTS vary between one request's candidates: {varying}",
                          field="REQUEST_INPUTS")  # fmt: skip
    first = per_request.nth(0).set_index("request_id")
    users = frame.set_index("request_id").user_id.reindex(first.index)
    picked = one_per_user(first.assign(user_id=users.to_numpy()), seed)
    return picked[list(REQUEST_INPUTS)].to_numpy(np.float64)


# window lengths the reference measures requests per user at (the monitor interpolates)
WINDOW_LENGTHS_S = (60, 300, 900, 3600, 4 * 3600, 86_400)


def requests_per_user(log: pd.DataFrame, start: int, end: int) -> dict[int, float]:
    """Per window length w: the log's requests over its distinct users, in consecutive
    windows of length w over [start, end) (pooled). A user's requests share the user's
    features, so this is the design effect of a serving window that long."""
    ts, users = log.ts.to_numpy(np.int64), log.user_id.to_numpy()
    inside = (ts >= start) & (ts < end)
    ts, users = ts[inside], users[inside]
    out = {}
    for w in WINDOW_LENGTHS_S:
        if w > end - start or not len(ts):
            continue
        distinct = len(pd.DataFrame({"w": (ts - start) // w, "u": users}).drop_duplicates())
        out[w] = round(len(ts) / distinct, 4)
    return out


def serving_reference(
    path: OfflineServing, frame: pd.DataFrame, edges: Path, as_of: int, log: pd.DataFrame
) -> dict[str, Any]:
    """Bin counts of the serving path's model inputs and scores for the users and
    contexts of `frame` (requests sampled from `log`), as served at `as_of` (see
    `as_snapshot`), with the sample's distinct users (its effective size), the distinct
    videos and creators among its candidates, and the log's requests per user by window
    length."""
    rows = path.serve(as_snapshot(frame, as_of))
    bins = FeatureBins.load(edges, FEATURES.model_inputs)
    cfg = path.settings.serving
    start = int(log.ts.min()) if len(log) else as_of
    inputs = request_inputs(rows, frame, path.settings.train.seed)
    return {**counts(rows, bins, len(frame)), "samples": int(frame.user_id.nunique()),
            "request_inputs": {"names": list(REQUEST_INPUTS), "values": inputs.tolist()},
            "requests_per_user": requests_per_user(log, start, as_of),
            "units": path.units(rows),
            "candidates": cfg.candidates, "fresh_candidates": cfg.fresh_candidates}  # fmt: skip
