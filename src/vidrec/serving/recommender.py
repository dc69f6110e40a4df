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
import pyarrow as pa

from vidrec.config import DAY, ServingConfig
from vidrec.features.bins import SCORE_FEATURE, BinCounts, score_bins
from vidrec.features.definitions import FEATURES, REQUEST_INPUT_COLUMNS, USER, as_float_matrix
from vidrec.features.hours import HOUR_FEATURE, hour_counts
from vidrec.features.online import OnlineFeatures
from vidrec.serving.api import Item, RecommendRequest, RecommendResponse
from vidrec.serving.model import Array, ServingModel, popular_in
from vidrec.serving.rules import Candidate, SlateItem, compose


@dataclass(frozen=True)
class Retrieved:
    ids: list[int]  # retrieval candidates, best first
    fresh: list[int]  # exploration pool: recent uploads closest to the user
    watched: list[int]
    seconds: float
    # the user's raw feature columns (one row) as the tower read them: ranking reuses them,
    # so a request reads its user once and both stages see the same snapshot and history
    user: dict[str, Any] = field(default_factory=dict)


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


Asked = tuple[RecommendRequest, str, int]  # a request, its id and its time


@dataclass
class Stages:
    model: ServingModel
    features: OnlineFeatures
    cfg: ServingConfig = field(default_factory=ServingConfig)

    def __post_init__(self) -> None:
        # the user tower reads the user's features only: the same code path, without reading
        # and finishing every video, creator and category feature for a row that has none
        self.user_features = self.features.only({USER.name})
        self.user_names = self.features.names_of(USER.name)

    def retrieve(self, req: RecommendRequest, rid: str, ts: int) -> Retrieved:
        return self.retrieve_many([(req, rid, ts)])[0]

    def rank(self, req: RecommendRequest, rid: str, ts: int, got: Retrieved) -> Ranked:
        return self.rank_many([(req, rid, ts)], [got])[0]

    def retrieve_many(self, calls: list[Asked]) -> list[Retrieved]:
        """Each call's candidates: the user tower and the index take the batch's users at
        once (a call's Python overhead is most of a request's cost). A request's result does
        not depend on the others in its batch. `seconds` is the batch's: each waited for it."""
        t0 = time.perf_counter()
        raw = self.user_features.read(rows([(req, rid, ts, [-1]) for req, rid, ts in calls]))
        user = self.user_features.finish(raw)
        emb = self.model.embed_users(user)
        found = self._search(emb, [self._wanted(req) for req, _, _ in calls])
        # found and uploaded by the request's time (an id outside the catalogue has NaN)
        ids = [f[(f >= 0) & (self.model.item_values("upload_ts", f) <= ts)].tolist()
               for f, (_, _, ts) in zip(found, calls, strict=True)]  # fmt: skip
        fresh = [self._fresh(emb[i : i + 1], ts, set(ids[i])) for i, (_, _, ts) in enumerate(calls)]
        watched = user["user_last_watched"]
        seconds = time.perf_counter() - t0
        return [Retrieved(ids[i], fresh[i], [int(v) for v in watched[i].as_py()], seconds,
                          {n: raw[n][i : i + 1] for n in self.user_names})
                for i in range(len(calls))]  # fmt: skip

    def _wanted(self, req: RecommendRequest) -> int:
        return min(max(self.cfg.candidates, 2 * req.k), len(self.model.index))

    def _search(self, emb: npt.NDArray[np.float32], wanted: list[int]) -> list[Array]:
        """Each row's nearest `wanted[i]`: one index search per distinct count (the index's
        probes depend on it, so a request finds what it would alone)."""
        out: list[Array] = [np.empty(0, np.int64)] * len(wanted)
        for n in set(wanted):
            at = [i for i, w in enumerate(wanted) if w == n]
            found, _ = self.model.index.search(emb[at], n)
            for j, i in enumerate(at):
                out[i] = found[j]
        return out

    def _fresh(self, emb: npt.NDArray[np.float32], ts: int, exclude: set[int]) -> list[int]:
        index, pool = self.model.fresh_index(ts, self.cfg.fresh_days * DAY)
        if not len(pool) or not self.cfg.fresh_candidates:
            return []
        # at most len(exclude) of the nearest are excluded: no need to rank the whole pool
        n = self.cfg.fresh_candidates
        found, _ = index.search(emb, min(len(pool), n + len(exclude)))
        return [v for v in found[0].tolist() if v >= 0 and v not in exclude][:n]

    def rank_many(self, calls: list[Asked], got: list[Retrieved]) -> list[Ranked]:
        """Each call's candidates scored: one feature read and one ranker call for the batch's
        rows, split back per call (`seconds` as in `retrieve_many`)."""
        t0 = time.perf_counter()
        ids = [g.ids + g.fresh for g in got]
        asked = rows([(*c, i) for c, i in zip(calls, ids, strict=True)])
        cols = self.features.columns(asked, self._user_rows(got, [len(i) for i in ids]))
        t1 = time.perf_counter()
        x = as_float_matrix(cols, FEATURES)
        scores = np.asarray(self.model.scorer.score(x), dtype=np.float64)
        t2 = time.perf_counter()
        vids = np.fromiter((v for i in ids for v in i), np.int64, len(x))
        creators = self.model.item_values("creator_id", vids)
        cuts = np.cumsum([0] + [len(i) for i in ids])
        return [self._ranked(c[2], g, vids[a:b], creators[a:b], scores[a:b], x[a:b],
                             t1 - t0, t2 - t1)
                for c, g, a, b in zip(calls, got, cuts[:-1], cuts[1:], strict=True)]  # fmt: skip

    def _user_rows(self, got: list[Retrieved], lens: list[int]) -> dict[str, Any] | None:
        """The user columns retrieval read, a row per candidate (None: read them again)."""
        if not all(set(g.user) == set(self.user_names) for g in got):
            return None
        where = np.repeat(np.arange(len(got)), lens)
        return {n: _take([g.user[n] for g in got], where) for n in self.user_names}

    def _ranked(self, ts: int, got: Retrieved, vids: Array, creators: npt.NDArray[np.float64],
                scores: npt.NDArray[np.float64], x: npt.NDArray[np.float64],
                features_s: float, ranking_s: float) -> Ranked:  # fmt: skip
        n = len(got.ids)
        order = best_first(vids[:n], scores[:n])
        fresh = list(candidates(vids[n:], creators[n:], scores[n:]))
        bins = {**self.model.bins.count(x), SCORE_FEATURE: score_bins(scores),
                HOUR_FEATURE: hour_counts(self.features.as_of(ts))}  # fmt: skip
        inputs = x[0, REQUEST_INPUT_COLUMNS].tolist() if len(x) else []
        return Ranked(vids[:n][order], creators[:n][order], scores[:n][order], fresh,
                      features_s, ranking_s, bins, inputs)  # fmt: skip


def _take(parts: list[Any], where: npt.NDArray[np.intp]) -> Any:
    """Rows `where` of one-row columns stacked: numpy arrays or Arrow arrays (id lists)."""
    if isinstance(parts[0], pa.Array):
        col = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        return col.take(pa.array(where))
    return (parts[0] if len(parts) == 1 else np.concatenate(parts))[where]


def best_first(ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """The order of candidates by score, highest first; ties by video id (reproducible)."""
    return np.lexsort((ids, -scores))


def rows(asked: list[tuple[RecommendRequest, str, int, list[int]]]) -> dict[str, npt.NDArray[Any]]:
    """The feature pipeline's request columns for requests (each with its id, time and
    candidate videos; -1: the user alone): a row per candidate, request after request, so a
    batch's features are one read."""
    lens = [len(ids) for *_, ids in asked]
    return {
        "request_id": np.repeat(np.array([rid for _, rid, _, _ in asked], dtype=object), lens),
        "ts": np.repeat(np.array([ts for _, _, ts, _ in asked], dtype=np.int64), lens),
        "user_id": np.repeat(np.array([r.user_id for r, *_ in asked], dtype=np.int64), lens),
        "video_id": np.fromiter((v for *_, ids in asked for v in ids), np.int64, sum(lens)),
        "device": np.repeat(np.array([r.context.device for r, *_ in asked], dtype=object), lens),
        "session_position": np.repeat(
            np.array([r.context.session_position for r, *_ in asked], dtype=np.int64), lens
        ),
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


@dataclass(frozen=True)
class Call:
    """One request's call to a version's app (several travel in one Ray Serve call)."""

    req: RecommendRequest
    rid: str
    ts: int
    variant: str
    deadline: float = float("inf")  # wall clock: the server has answered from the fallback


@dataclass(frozen=True)
class Failed:
    """A call whose model path raised, in a batch that went on without it."""

    reason: str  # the exception's type name: the degraded response's reason


Outcome = Served | Failed | None  # None: the call reached the replica after its deadline


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
