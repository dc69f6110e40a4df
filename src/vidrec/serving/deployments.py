"""The Ray Serve application: per model version a Retrieval and a Ranking deployment,
composed by one Recommender that routes each user to a variant.

Replicas run `recommender.Stages`, the same code as the in-process path. The
Recommender applies the route table (re-read when it changes: live weights
without a restart), sends a shadow copy of some requests to the challenger
without waiting for it, and degrades to popularity when the model path fails
or misses its deadline. Every deployment asks for a fraction of a CPU: on a
2-core machine whole-CPU replicas stay pending forever.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, cast

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from vidrec.config import FeatureConfig, ServingConfig
from vidrec.features.definitions import FEATURES
from vidrec.features.online import OnlineFeatures
from vidrec.features.store import open_store
from vidrec.serving.api import RecommendRequest, RecommendResponse
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.model import ServingModel
from vidrec.serving.recommender import (
    Ranked,
    Retrieved,
    Stages,
    fallback,
    response,
    slate,
    timings,
)
from vidrec.serving.routing import Variant, assign, shadowed

CPU = 0.2


def _stages(bundle: str, version: str, features: FeatureConfig, cfg: ServingConfig) -> Stages:
    model = ServingModel.load(Path(bundle), version)
    online = OnlineFeatures(open_store(features.online_store), FEATURES, features.last_n)
    return Stages(model, online, cfg)


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Retrieval:
    def __init__(self, bundle: str, version: str, features: FeatureConfig, cfg: ServingConfig):
        self.stages = _stages(bundle, version, features, cfg)

    def retrieve(self, req: RecommendRequest, rid: str, ts: int) -> Retrieved:
        return self.stages.retrieve(req, rid, ts)


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Ranking:
    def __init__(self, bundle: str, version: str, features: FeatureConfig, cfg: ServingConfig):
        self.stages = _stages(bundle, version, features, cfg)

    def rank(self, req: RecommendRequest, rid: str, ts: int, got: Retrieved) -> Ranked:
        return self.stages.rank(req, rid, ts, got)


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Recommender:
    def __init__(
        self,
        variants: dict[str, tuple[DeploymentHandle[Any], DeploymentHandle[Any], str, str]],
        routes: str,
        cfg: ServingConfig,
        deadline_s: float = 0.5,
        shadow_queue: int = 64,
    ):
        """variants: model version -> (retrieval, ranking, bundle dir, version)."""
        self.variants = variants
        self.routes = FileRouteSource(Path(routes))
        self.cfg, self.deadline_s = cfg, deadline_s
        self.popular = {
            v: ServingModel.popularity_of(Path(b)) for v, (_, _, b, _) in variants.items()
        }
        self.rng = np.random.default_rng()
        self.shadow_slots = asyncio.Semaphore(shadow_queue)
        self.shadow_stats = {"sent": 0, "dropped": 0, "failed": 0}
        self.shadow_log: list[dict[str, Any]] = []

    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        table = self.routes.get()
        variant: Variant = assign(table, req.user_id)
        version = table.challenger if variant == "challenger" else table.champion
        assert version is not None
        rid = req.request_id or uuid.uuid4().hex
        ts = req.context.ts if req.context.ts is not None else int(time.time())
        resp = await self._serve(req, rid, ts, variant, version)
        if table.challenger is not None and shadowed(table, rid, variant):
            self._shadow(req, rid, ts, table.challenger, resp)
        return resp

    async def _serve(
        self, req: RecommendRequest, rid: str, ts: int, variant: str, version: str
    ) -> RecommendResponse:
        retrieval, ranking, _, _ = self.variants[version]
        try:
            got = await asyncio.wait_for(
                retrieval.retrieve.remote(req, rid, ts), timeout=self.deadline_s
            )
            ranked = await ranking.rank.remote(req, rid, ts, got)
        except Exception as exc:  # a failed or late model path degrades, never a 500
            reason = "deadline" if isinstance(exc, TimeoutError) else type(exc).__name__
            items = fallback(req, self.popular[version], self.cfg)
            return response(req, rid, variant, version, items, {}, reason)
        items = slate(req, got, ranked, self.cfg, self.rng)
        return response(req, rid, variant, version, items, timings(got, ranked))

    def _shadow(
        self, req: RecommendRequest, rid: str, ts: int, version: str, served: RecommendResponse
    ) -> None:
        """Fire and forget through a bounded queue: the user's response never waits for it."""
        if self.shadow_slots.locked():
            self.shadow_stats["dropped"] += 1
            return

        async def run() -> None:
            async with self.shadow_slots:
                try:
                    shadow = await self._serve(req, rid, ts, "shadow", version)
                except Exception:
                    self.shadow_stats["failed"] += 1
                    return
                self.shadow_stats["sent"] += 1
                a = [i.video_id for i in served.items]
                b = [i.video_id for i in shadow.items]
                overlap = len(set(a) & set(b)) / max(len(a), 1)
                self.shadow_log = [*self.shadow_log[-999:], {"request_id": rid, "overlap": overlap}]

        asyncio.get_running_loop().create_task(run())

    def shadow_report(self) -> dict[str, Any]:
        overlaps = [x["overlap"] for x in self.shadow_log]
        return {**self.shadow_stats, "mean_overlap": float(np.mean(overlaps)) if overlaps else None}

    def ping(self) -> str:
        return "ok"


def build_app(
    bundles: dict[str, str], routes: Path, features: FeatureConfig, cfg: ServingConfig
) -> Any:
    """One Retrieval and one Ranking per model version, one Recommender over them."""
    retrieval, ranking, recommender = (
        cast(Any, Retrieval),
        cast(Any, Ranking),
        cast(Any, Recommender),
    )
    variants = {
        version: (
            retrieval.options(name=f"retrieval-v{version}").bind(bundle, version, features, cfg),
            ranking.options(name=f"ranking-v{version}").bind(bundle, version, features, cfg),
            bundle,
            version,
        )
        for version, bundle in bundles.items()
    }
    return recommender.bind(variants, str(routes), cfg)
