"""Retrieval -> features -> ranking -> business rules, for one request, in one process.

The Ray Serve deployments call these same pieces (so the in-process path is
also the benchmark's baseline). Any failure or missed deadline in the model
path degrades to the segment's popularity list through the same rules;
degraded responses say so and why, so they are counted, never hidden.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.config import DAY, ServingConfig
from vidrec.features.definitions import FEATURES, as_float_matrix
from vidrec.features.online import OnlineFeatures
from vidrec.serving.api import Item, RecommendRequest, RecommendResponse
from vidrec.serving.model import ServingModel
from vidrec.serving.rules import Candidate, SlateItem, compose

CANDIDATES = 200  # retrieved per request and ranked
FRESH_CANDIDATES = 20


@dataclass
class Recommender:
    model: ServingModel
    features: OnlineFeatures
    cfg: ServingConfig = field(default_factory=ServingConfig)
    variant: str = "champion"
    seed: int = 0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def recommend(self, req: RecommendRequest) -> RecommendResponse:
        rid = req.request_id or uuid.uuid4().hex
        ts = req.context.ts if req.context.ts is not None else int(self.clock())
        timings: dict[str, float] = {}
        try:
            slate, degraded, reason = self._model_path(req, rid, ts, timings), False, None
        except Exception as exc:  # any model failure degrades, never a 500
            slate, degraded, reason = self._fallback(req), True, type(exc).__name__
        return RecommendResponse(
            request_id=rid,
            user_id=req.user_id,
            variant=self.variant,
            model_version=self.model.version,
            items=[Item(**s.__dict__) for s in slate],
            degraded=degraded,
            reason=reason,
            timings_s=timings,
        )

    def _model_path(
        self, req: RecommendRequest, rid: str, ts: int, timings: dict[str, float]
    ) -> list[SlateItem]:
        t0 = time.perf_counter()
        user = self.features.frame(self._rows(req, rid, ts, [-1]))
        ids = self._retrieve(user, ts, max(CANDIDATES, 2 * req.k))
        fresh = self._fresh(user, ts, exclude=set(ids))
        t1 = time.perf_counter()
        frame = self.features.frame(self._rows(req, rid, ts, ids + fresh))
        t2 = time.perf_counter()
        scores = self.model.scorer.score(as_float_matrix(frame, FEATURES))
        t3 = time.perf_counter()
        timings.update(retrieval=t1 - t0, features=t2 - t1, ranking=t3 - t2)
        cands = self._candidates(frame, scores)
        ranked = sorted(cands[: len(ids)], key=lambda c: (-c.score, c.video_id))
        watched = user.user_last_watched.iloc[0]
        return compose(
            ranked,
            req.k,
            watched=[int(v) for v in watched],
            fresh=cands[len(ids) :],
            max_per_creator=self.cfg.max_per_creator,
            explore_slots=self.cfg.explore_slots,
            rng=self.rng,
        )

    def _rows(self, req: RecommendRequest, rid: str, ts: int, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "request_id": rid,
                "ts": ts,
                "user_id": req.user_id,
                "video_id": np.asarray(ids, dtype=np.int64),
                "device": req.context.device,
                "session_position": req.context.session_position,
            }
        )

    def _retrieve(self, user: pd.DataFrame, ts: int, n: int) -> list[int]:
        n = min(n, len(self.model.index))
        found, _ = self.model.index.search(self.model.towers.embed_users(user), n)
        up = self.model.items.upload_ts.reindex(found[0]).to_numpy()
        return [int(v) for v, u in zip(found[0], up, strict=True) if v >= 0 and u <= ts]

    def _fresh(self, user: pd.DataFrame, ts: int, exclude: set[int]) -> list[int]:
        index, pool = self.model.fresh_index(ts, self.cfg.fresh_days * DAY)
        if not len(pool):
            return []
        found, _ = index.search(self.model.towers.embed_users(user), len(pool))
        return [int(v) for v in found[0] if v >= 0 and int(v) not in exclude][:FRESH_CANDIDATES]

    def _candidates(self, frame: pd.DataFrame, scores: npt.NDArray[np.float64]) -> list[Candidate]:
        creators = self.model.items.creator_id.reindex(frame.video_id).to_numpy()
        return [
            Candidate(int(v), None if np.isnan(c) else int(c), float(s))
            for v, c, s in zip(frame.video_id, creators, scores, strict=True)
        ]

    def _fallback(self, req: RecommendRequest) -> list[SlateItem]:
        country = req.context.country or "*"
        age = req.context.age_bucket or "*"
        ids = self.model.popular(country, age)
        cands = [Candidate(v, None, float(len(ids) - i)) for i, v in enumerate(ids)]
        return compose(cands, req.k, max_per_creator=self.cfg.max_per_creator, source="fallback")
