"""Retrieval -> features -> ranking -> business rules, for one request.

`Stages` are the two model stages of one model version; the Ray Serve
deployments run them (both in one replica, or one stage per deployment), and
`Recommender` runs them in this process (the benchmark's in-process baseline
and the unit of the tests).
Any failure or missed deadline in the model path degrades to the segment's
popularity list through the same rules; degraded responses say so and why.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vidrec.config import DAY, ServingConfig
from vidrec.features.bins import SCORE_FEATURE, BinCounts, score_bins
from vidrec.features.definitions import FEATURES, REQUEST_INPUT_COLUMNS, USER, as_float_matrix
from vidrec.features.hours import HOUR_FEATURE, hour_counts
from vidrec.features.online import OnlineFeatures
from vidrec.serving.api import Item, RecommendRequest, RecommendResponse
from vidrec.serving.model import ServingModel, popular_in
from vidrec.serving.rules import Candidate, SlateItem, compose


@dataclass(frozen=True)
class Retrieved:
    ids: list[int]  # retrieval candidates, best first
    fresh: list[int]  # exploration pool: recent uploads closest to the user
    watched: list[int]
    seconds: float


@dataclass(frozen=True)
class Ranked:
    # retrieval candidates by score, best first, as columns: the rules read only as far as
    # the slate needs (a Candidate per candidate was a tenth of the model path's CPU)
    ids: npt.NDArray[np.int64]
    creators: npt.NDArray[np.float64]  # NaN: unknown
    scores: npt.NDArray[np.float64]
    fresh: list[Candidate]
    features_s: float
    ranking_s: float
    bins: dict[str, BinCounts]  # the scored feature matrix in the reference's bins
    inputs: list[float]  # the request's own model inputs (REQUEST_INPUTS order)

    def ranked(self) -> Iterator[Candidate]:
        """The retrieval candidates best first, each built as the rules reach it."""
        return candidates(self.ids, self.creators, self.scores)


def candidates(
    ids: npt.NDArray[np.int64], creators: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]
) -> Iterator[Candidate]:
    """Columns -> Candidates, lazily (a NaN creator is unknown: None)."""
    for v, c, s in zip(ids.tolist(), creators.tolist(), scores.tolist(), strict=True):
        yield Candidate(v, None if c != c else int(c), s)  # c != c: NaN


@dataclass
class Stages:
    model: ServingModel
    features: OnlineFeatures
    cfg: ServingConfig = field(default_factory=ServingConfig)

    def __post_init__(self) -> None:
        # the user tower reads the user's features only: the same code path, without reading
        # and finishing every video, creator and category feature for a row that has none
        self.user_features = self.features.only({USER.name})

    def retrieve(self, req: RecommendRequest, rid: str, ts: int) -> Retrieved:
        t0 = time.perf_counter()
        user = self.user_features.columns(rows(req, rid, ts, [-1]))
        emb = self.model.embed_users(user)
        n = min(max(self.cfg.candidates, 2 * req.k), len(self.model.index))
        found, _ = self.model.index.search(emb, n)
        up = self.model.item_values("upload_ts", found[0])
        ids = [int(v) for v, u in zip(found[0], up, strict=True) if v >= 0 and u <= ts]
        fresh = self._fresh(emb, ts, set(ids))
        watched = [int(v) for v in user["user_last_watched"][0].as_py()]
        return Retrieved(ids, fresh, watched, time.perf_counter() - t0)

    def _fresh(self, emb: npt.NDArray[np.float32], ts: int, exclude: set[int]) -> list[int]:
        index, pool = self.model.fresh_index(ts, self.cfg.fresh_days * DAY)
        if not len(pool) or not self.cfg.fresh_candidates:
            return []
        # at most len(exclude) of the nearest are excluded: no need to rank the whole pool
        n = self.cfg.fresh_candidates
        found, _ = index.search(emb, min(len(pool), n + len(exclude)))
        ids = found[0][found[0] >= 0]
        keep = ~np.isin(ids, np.fromiter(exclude, np.int64, len(exclude)))
        return [int(v) for v in ids[keep][:n]]

    def rank(self, req: RecommendRequest, rid: str, ts: int, got: Retrieved) -> Ranked:
        t0 = time.perf_counter()
        ids = got.ids + got.fresh
        cols = self.features.columns(rows(req, rid, ts, ids))
        t1 = time.perf_counter()
        x = as_float_matrix(cols, FEATURES)
        scores = self.model.scorer.score(x)
        t2 = time.perf_counter()
        vids = np.asarray(ids, dtype=np.int64)
        creators = self.model.item_values("creator_id", vids)
        scores = np.asarray(scores, dtype=np.float64)
        n = len(got.ids)
        order = best_first(vids[:n], scores[:n])
        fresh = list(candidates(vids[n:], creators[n:], scores[n:]))
        bins = {**self.model.bins.count(x), SCORE_FEATURE: score_bins(scores),
                HOUR_FEATURE: hour_counts(self.features.as_of(ts))}  # fmt: skip
        inputs = x[0, REQUEST_INPUT_COLUMNS].tolist() if len(x) else []
        return Ranked(vids[:n][order], creators[:n][order], scores[:n][order], fresh,
                      t1 - t0, t2 - t1, bins, inputs)  # fmt: skip


def best_first(ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """The order of candidates by score, highest first; ties by video id (reproducible)."""
    return np.lexsort((ids, -scores))


def rows(req: RecommendRequest, rid: str, ts: int, ids: list[int]) -> dict[str, npt.NDArray[Any]]:
    """The feature pipeline's request columns: one row per candidate video (-1: the user alone)."""
    n = len(ids)
    return {
        "request_id": np.full(n, rid, dtype=object),
        "ts": np.full(n, ts, dtype=np.int64),
        "user_id": np.full(n, req.user_id, dtype=np.int64),
        "video_id": np.asarray(ids, dtype=np.int64),
        "device": np.full(n, req.context.device, dtype=object),
        "session_position": np.full(n, req.context.session_position, dtype=np.int64),
    }


def request_rng(rid: str, stream: int = 0) -> np.random.Generator:
    """A request's own random draws, a function of its id: a replayed request gets the same
    slate, and no generator is shared by a replica's threads (numpy's are not thread-safe).
    `stream` keeps unrelated uses of one request's id apart."""
    digest = hashlib.blake2b(rid.encode(), digest_size=8).digest()
    return np.random.default_rng([stream, int.from_bytes(digest, "little")])


def slate(
    req: RecommendRequest,
    got: Retrieved,
    ranked: Ranked,
    cfg: ServingConfig,
    rng: np.random.Generator,
) -> list[SlateItem]:
    return compose(
        ranked.ranked(),
        req.k,
        watched=got.watched,
        fresh=ranked.fresh,
        max_per_creator=cfg.max_per_creator,
        explore_slots=cfg.explore_slots,
        rng=rng,
    )


def fallback(
    req: RecommendRequest, lists: dict[str, list[int]], cfg: ServingConfig
) -> list[SlateItem]:
    """The request's popularity segment through the same rules (`lists`: bundle fallback)."""
    popular = popular_in(lists, req.context.country, req.context.age_bucket)
    # lazily: the rules stop at k, and this path must stay cheap when the server is overloaded
    cands = (Candidate(v, None, float(len(popular) - i)) for i, v in enumerate(popular))
    return compose(cands, req.k, max_per_creator=cfg.max_per_creator, source="fallback")


def timings(got: Retrieved, ranked: Ranked) -> dict[str, float]:
    """Seconds per model stage: they travel back with the response to become metrics."""
    return {"retrieval": got.seconds, "features": ranked.features_s, "ranking": ranked.ranking_s}


def response(
    req: RecommendRequest,
    rid: str,
    ts: int,
    variant: str,
    version: str,
    items: list[SlateItem],
    timings: dict[str, float],
    reason: str | None = None,
) -> RecommendResponse:
    return RecommendResponse(
        request_id=rid,
        ts=ts,
        user_id=req.user_id,
        variant=variant,
        model_version=version,
        items=[Item(**s.__dict__) for s in items],
        degraded=reason is not None,
        reason=reason,
        timings_s=timings,
    )


@dataclass(frozen=True)
class Served:
    """A response and what the server process turns into metrics but the user never sees."""

    response: RecommendResponse
    bins: dict[str, BinCounts]  # empty when degraded (no features were computed)
    inputs: list[float] = field(default_factory=list)  # REQUEST_INPUTS; empty when degraded


@dataclass
class Recommender:
    """Both stages and the rules in this process, for one model version."""

    model: ServingModel
    features: OnlineFeatures
    cfg: ServingConfig = field(default_factory=ServingConfig)
    variant: str = "champion"
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.stages = Stages(self.model, self.features, self.cfg)

    def recommend(self, req: RecommendRequest) -> RecommendResponse:
        rid = req.request_id or uuid.uuid4().hex
        ts = req.context.ts if req.context.ts is not None else int(self.clock())
        try:
            got = self.stages.retrieve(req, rid, ts)
            ranked = self.stages.rank(req, rid, ts, got)
        except Exception as exc:  # any model failure degrades, never a 500
            items = fallback(req, self.model.popularity, self.cfg)
            return response(
                req, rid, ts, self.variant, self.model.version, items, {}, type(exc).__name__
            )
        items = slate(req, got, ranked, self.cfg, request_rng(rid))
        return response(req, rid, ts, self.variant, self.model.version, items, timings(got, ranked))
