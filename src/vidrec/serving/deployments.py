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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from vidrec.config import FeatureConfig, ServingConfig
from vidrec.errors import NotReady
from vidrec.features.definitions import FEATURES
from vidrec.features.online import OnlineFeatures
from vidrec.features.store import open_store
from vidrec.serving.api import RecommendRequest
from vidrec.serving.faults import FaultFile
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.model import ServingModel
from vidrec.serving.recommender import (
    Ranked,
    Retrieved,
    Served,
    Stages,
    fallback,
    response,
    slate,
    timings,
)
from vidrec.serving.routing import Variant, assign, shadowed
from vidrec.serving.shadow import Comparison, compare

CPU = 0.2
MAX_UNDRAINED = 10_000


class _StageReplica:
    """One model version's stages in a replica, with the fault file it obeys."""

    def __init__(
        self,
        bundle: str,
        version: str,
        features: FeatureConfig,
        cfg: ServingConfig,
        faults: str | None = None,
    ):
        model = ServingModel.load(Path(bundle), version)
        online = OnlineFeatures(open_store(features.online_store), FEATURES, features.last_n)
        self.stages = Stages(model, online, cfg)
        self.version, self.faults = version, FaultFile(Path(faults) if faults else None)


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Retrieval(_StageReplica):
    def retrieve(self, req: RecommendRequest, rid: str, ts: int) -> Retrieved:
        self.faults.apply("retrieval", self.version)
        return self.stages.retrieve(req, rid, ts)


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Ranking(_StageReplica):
    def rank(self, req: RecommendRequest, rid: str, ts: int, got: Retrieved) -> Ranked:
        self.faults.apply("ranking", self.version)
        return self.stages.rank(req, rid, ts, got)


@dataclass(frozen=True)
class ShadowResult:
    served: list[int]  # what the user was shown
    shadow: Served  # what the challenger would have shown (variant "shadow")
    comparison: Comparison | None  # None when the shadow call degraded


@dataclass
class ShadowReport:
    """Shadow outcomes since the last drain; the server process turns them into metrics."""

    results: list[ShadowResult] = field(default_factory=list)
    dropped: int = 0  # queue full (never sent), or results over MAX_UNDRAINED (never polled)
    failed: int = 0


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Recommender:
    def __init__(
        self,
        variants: dict[str, tuple[DeploymentHandle[Any], DeploymentHandle[Any], str]],
        routes: str,
        cfg: ServingConfig,
    ):
        """variants: model version -> (retrieval, ranking, bundle dir)."""
        self.variants = variants
        self.routes = FileRouteSource(Path(routes))
        self.cfg = cfg
        self.popular = {v: ServingModel.popularity_of(Path(b)) for v, (_, _, b) in variants.items()}
        self.rng = np.random.default_rng()
        self.shadow_slots = asyncio.Semaphore(cfg.shadow_queue)
        self.report = ShadowReport()

    async def recommend(self, req: RecommendRequest) -> Served:
        table = self.routes.get()
        variant: Variant = assign(table, req.user_id)
        version = table.challenger if variant == "challenger" else table.champion
        assert version is not None
        if version not in self.variants:  # the table names a model this app did not load
            raise NotReady(
                f"model version {version} ({variant}) is not loaded here; loaded: "
                f"{sorted(self.variants)}",
                version=version,
            )
        rid = req.request_id or uuid.uuid4().hex
        ts = req.context.ts if req.context.ts is not None else int(time.time())
        served = await self._serve(req, rid, ts, variant, version)
        challenger = table.challenger
        if challenger in self.variants and shadowed(table, rid, variant):
            self._shadow(req, rid, ts, challenger, served)
        return served

    async def _serve(
        self, req: RecommendRequest, rid: str, ts: int, variant: str, version: str
    ) -> Served:
        try:
            got, ranked = await asyncio.wait_for(
                self._model_path(req, rid, ts, version), timeout=self.cfg.deadline_s
            )
        except Exception as exc:  # a failed or late model path degrades, never a 500
            reason = "deadline" if isinstance(exc, TimeoutError) else type(exc).__name__
            items = fallback(req, self.popular[version], self.cfg)
            return Served(response(req, rid, ts, variant, version, items, {}, reason), {})
        items = slate(req, got, ranked, self.cfg, self.rng)
        resp = response(req, rid, ts, variant, version, items, timings(got, ranked))
        return Served(resp, ranked.bins)

    async def _model_path(
        self, req: RecommendRequest, rid: str, ts: int, version: str
    ) -> tuple[Retrieved, Ranked]:
        retrieval, ranking, _ = self.variants[version]
        got: Retrieved = await retrieval.retrieve.remote(req, rid, ts)
        ranked: Ranked = await ranking.rank.remote(req, rid, ts, got)
        return got, ranked

    def _shadow(
        self, req: RecommendRequest, rid: str, ts: int, version: str, served: Served
    ) -> None:
        """Fire and forget through a bounded queue: the user's response never waits for it."""
        if self.shadow_slots.locked():
            self.report.dropped += 1
            return

        async def run() -> None:
            async with self.shadow_slots:
                try:
                    shadow = await self._serve(req, rid, ts, "shadow", version)
                except Exception:
                    self.report.failed += 1
                    return
            shown = [i.video_id for i in served.response.items]
            theirs = [i.video_id for i in shadow.response.items]
            comparison = None if shadow.response.degraded else compare(shown, theirs)
            if len(self.report.results) >= MAX_UNDRAINED:  # nobody polls: keep memory bounded
                self.report.dropped += 1
                return
            self.report.results.append(ShadowResult(shown, shadow, comparison))

        asyncio.get_running_loop().create_task(run())

    def drain(self) -> ShadowReport:
        """Shadow outcomes since the last call (the server process polls this)."""
        report, self.report = self.report, ShadowReport()
        return report

    def ping(self) -> str:
        return "ok"


def build_app(
    bundles: dict[str, str],
    routes: Path,
    features: FeatureConfig,
    cfg: ServingConfig,
    faults: Path | None = None,
) -> Any:
    """One Retrieval and one Ranking per model version, one Recommender over them."""
    retrieval, ranking, recommender = (
        cast(Any, Retrieval),
        cast(Any, Ranking),
        cast(Any, Recommender),
    )
    fault_file = str(faults) if faults else None
    variants = {
        version: (
            retrieval.options(name=f"retrieval-v{version}").bind(
                bundle, version, features, cfg, fault_file
            ),
            ranking.options(name=f"ranking-v{version}").bind(
                bundle, version, features, cfg, fault_file
            ),
            bundle,
        )
        for version, bundle in bundles.items()
    }
    return recommender.bind(variants, str(routes), cfg)
