"""What the model will see at serving, replayed offline: the drift monitor's reference.

Training rows are logged impressions (what the old policy showed); serving
ranks the two-tower's retrieval candidates plus fresh videos, a different
population (other videos, other ages, other popularity). Comparing serving
with training rows would flag drift on day one. So this runs the serving path
offline - retrieve `serving.candidates` from the IVF index, add
`serving.fresh_candidates` recent uploads, point-in-time features from the same
pipeline, the chosen ranker - for the users and contexts of requests from the
log, and counts the feature matrix into the training reference's bins
(`vidrec.features.bins`, the rule serving uses) and the candidates' scores into the
score bins. Features follow the time of day they are computed at
(`vidrec.features.hours`), so this is done per block of the day: as of the first feature
snapshot at or after the data's end and as of every `train.reference_block_s` before it
over the last `train.reference_days`, each time for the users with a request in the
`train.reference_lookback_s` before, and the days' snapshots at one hour are one block.

Why a lookback, not the whole day before: the simulator's users, like people, are
active on some days, not others. A user met between 00:00 and 04:00 has most of their
day still ahead; one met over the day before 04:00 has it behind them. Served at 04:00,
the first kind average 3.69 watches in the last day, the second 4.26 (small scale, 13
days); at midnight the day is over for both (4.28, 4.38). A monitor window's users
arrived within the window, so the reference's users arrive within a window as long.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.config import DAY, FeatureConfig, Settings, TrainConfig
from vidrec.data.validate import read_clean
from vidrec.errors import SchemaError
from vidrec.features.bins import SCORE_EDGES, FeatureBins, score_bins
from vidrec.features.definitions import (
    FEATURES,
    REQUEST_INPUT_COLUMNS,
    REQUEST_INPUTS,
    as_float_matrix,
    one_per_user,
)
from vidrec.features.hours import block_times, nearest_hour
from vidrec.features.pit import snapshot_after
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

    def units(self, video_ids: Array) -> dict[str, int]:
        """Distinct videos and creators among candidates `video_ids`: the most independent
        values a catalogue feature's histogram can hold (`CATALOGUE_UNITS`)."""
        videos = np.unique(video_ids)
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


def logged_requests(
    data: Path, start: int, end: int | None = None, cfg: FeatureConfig | None = None
) -> pd.DataFrame:
    """The log's valid requests (user and context, one row each) with ts in [start, end)."""
    upper = f"AND ts < {int(end)}" if end is not None else ""
    query = (f"SELECT {', '.join(CONTEXT)} FROM impressions WHERE ts >= {int(start)} {upper} "
             "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY position) = 1 "
             "ORDER BY request_id")  # fmt: skip
    return read_clean(data, cfg or FeatureConfig(), "impressions", query)


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
    path: OfflineServing, log: pd.DataFrame, edges: Path, as_of: int
) -> dict[str, Any]:
    """Per block and in all: bin counts of the serving path's model inputs and scores for
    `train.reference_requests` requests of `log` per block, served as of the block's
    snapshots (`block_times` of the first at or after `as_of`, over
    `train.reference_days`), each for requests of the `train.reference_lookback_s` before
    it (see `as_snapshot`); with their distinct users (the effective size) and request
    inputs, the distinct videos and creators among the candidates, and the log's requests
    per user by window length."""
    t, cfg = path.settings.train, path.settings.serving
    bins = FeatureBins.load(edges, FEATURES.model_inputs)
    # a request sees the snapshot at floor(t, refresh): as of the log's last second
    # (23:59:35) the reference read 23:00's and missed the last hour's sessions, a quarter
    # of a 4 h lookback's users (user_watches_1d flagged 41 of 393 quiet small windows)
    first = snapshot_after(path.settings.features.refresh_seconds, as_of)
    ends = block_times(first, t.reference_block_s, t.reference_days)
    n_blocks = DAY // t.reference_block_s
    # a request drawn by several snapshots gets an id per snapshot (id * snapshots + j)
    frames = []
    for j, end in enumerate(ends):
        f = _snapshot_requests(log, end, t, day=j // n_blocks, seed=t.seed + j)
        frames.append(f.assign(served_at=end, block=j % n_blocks,
                               request_id=f.request_id * len(ends) + j))  # fmt: skip
    everything = pd.concat(frames, ignore_index=True)
    # one call, not one per snapshot: the point-in-time join costs per call too (6 blocks
    # of a day at the small scale: 37 s -> 21 s)
    rows = path.serve(as_snapshot(everything, everything.served_at.to_numpy()))
    row_block = np.asarray(rows.request_id, dtype=np.int64) % len(ends) % n_blocks
    blocks: list[dict[str, Any]] = []
    inputs = []
    for i in range(n_blocks):
        mask, frame = row_block == i, everything[everything.block == i]
        block = ServedRows(rows.request_id[mask], rows.x[mask], rows.scores[mask])
        # a user on two days is two samples: their features moved on in between
        samples = len(frame.drop_duplicates(["user_id", "served_at"]))
        blocks.append({**counts(block, bins, len(frame)), "hour": nearest_hour(ends[i]),
                       "samples": samples})  # fmt: skip
        inputs.append(request_inputs(block, frame, t.seed))
    videos = rows.video_id if rows.video_id is not None else np.zeros(0, np.int64)
    start = int(log.ts.min()) if len(log) else as_of
    # in all: every row binned at once, which sums the blocks' counts
    return {**counts(rows, bins, len(everything)), "samples": sum(b["samples"] for b in blocks),
            "blocks": _by_block(blocks),
            "request_inputs": {"names": list(REQUEST_INPUTS),
                               "values": np.concatenate(inputs).tolist(),
                               "blocks": [i for i, x in enumerate(inputs) for _ in x]},
            "requests_per_user": requests_per_user(log, start, as_of),
            "units": path.units(videos),
            "lookback_s": t.reference_lookback_s, "days": t.reference_days,
            "candidates": cfg.candidates, "fresh_candidates": cfg.fresh_candidates}  # fmt: skip


def _snapshot_requests(
    log: pd.DataFrame, end: int, t: TrainConfig, day: int, seed: int
) -> pd.DataFrame:
    """The requests one snapshot at `end` serves: its `day`'s share of its block's
    `reference_requests`, from the `reference_lookback_s` before it."""
    n = t.reference_requests // t.reference_days + (day < t.reference_requests % t.reference_days)
    return sample_requests(log, end - t.reference_lookback_s, end, n, seed)


def _by_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The blocks' counts as columns: per feature, one row of counts per block."""
    names = list(blocks[0]["features"])
    return {
        "hours": [b["hour"] for b in blocks],
        "requests": [b["requests"] for b in blocks],
        "samples": [b["samples"] for b in blocks],
        "features": {n: {"counts": [b["features"][n]["counts"] for b in blocks],
                         "missing": [b["features"][n]["missing"] for b in blocks]}
                     for n in names},
        "score": [b["score"]["counts"] for b in blocks],
    }  # fmt: skip
