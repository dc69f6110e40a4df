"""The Ray Serve applications: one per model version, answering `recommend`.

A version's app runs retrieval -> ranking -> business rules and returns a
`Served`. Topology "fused" (the default) runs both stages in one replica, so a
request makes one hop from the server; "split" makes Retrieval and Ranking
deployments of their own, scaled apart, composed by the version's replica.
Every hop costs milliseconds of scheduling on a small machine (`vidrec bench
serve` measures both). Routing, shadowing and the popularity fallback live in
the server process (`vidrec.serving.router`), which owns the deadline.
Every deployment asks for a fraction of a CPU: on a 2-core machine whole-CPU
replicas stay pending forever.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, cast

from ray import serve
from ray.serve.handle import DeploymentHandle

from vidrec.config import FeatureConfig, ServingConfig
from vidrec.features.definitions import FEATURES
from vidrec.features.online import OnlineFeatures
from vidrec.features.store import open_store
from vidrec.serving import gc_pauses
from vidrec.serving.api import RecommendRequest
from vidrec.serving.faults import FaultFile, shuffled
from vidrec.serving.model import ServingModel
from vidrec.serving.recommender import (
    Ranked,
    Retrieved,
    Served,
    Stages,
    request_rng,
    response,
    slate,
    timings,
)

CPU = 0.2


class VersionStages:
    """One model version's two stages, obeying the fault file (tests inject faults per stage)."""

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
        # loaded, a replica holds ~390k tracked objects: full collections over them took
        # 0.21-0.27 s in its first seconds of serving; collected once here, before ready
        gc_pauses.freeze()

    def retrieve(self, req: RecommendRequest, rid: str, ts: int) -> Retrieved:
        self.faults.apply("retrieval", self.version)
        return self.stages.retrieve(req, rid, ts)

    def rank(self, req: RecommendRequest, rid: str, ts: int, got: Retrieved) -> Ranked:
        self.faults.apply("ranking", self.version)
        ranked = self.stages.rank(req, rid, ts, got)
        return shuffled(ranked, rid) if self.faults.shuffles(self.version) else ranked

    def ping(self) -> str:
        return "ok"


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Retrieval(VersionStages):
    """Split topology: the retrieval stage alone."""


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class Ranking(VersionStages):
    """Split topology: the ranking stage alone."""


@serve.deployment(ray_actor_options={"num_cpus": CPU})
class ModelVersion:
    """One model version's recommendation: stages in this replica (`local`, fused) or two
    deployment handles (split)."""

    def __init__(
        self,
        version: str,
        cfg: ServingConfig,
        local: tuple[str, FeatureConfig, str | None] | None = None,  # bundle, features, faults
        retrieval: DeploymentHandle[Any] | None = None,
        ranking: DeploymentHandle[Any] | None = None,
    ):
        self.version, self.cfg = version, cfg
        self.local = VersionStages(local[0], version, local[1], cfg, local[2]) if local else None
        self.retrieval, self.ranking = retrieval, ranking

    async def recommend(
        self, req: RecommendRequest, rid: str, ts: int, variant: str, deadline: float = math.inf
    ) -> Served | None:
        """Failures propagate: the server falls back and says why. None: the call reached
        this replica after `deadline` (wall clock), when the server had already answered
        from the fallback, so the model path is not run for nobody."""
        if time.time() >= deadline:
            return None
        if self.local is not None:  # CPU-bound and one at a time: the GIL would serialise it
            got = self.local.retrieve(req, rid, ts)
            ranked = self.local.rank(req, rid, ts, got)
        else:
            assert self.retrieval is not None and self.ranking is not None
            got = await self.retrieval.retrieve.remote(req, rid, ts)
            ranked = await self.ranking.rank.remote(req, rid, ts, got)
        items = slate(req, got, ranked, self.cfg, request_rng(rid))
        resp = response(req, rid, ts, variant, self.version, items, timings(got, ranked))
        return Served(resp, ranked.bins, ranked.inputs)

    async def ping(self) -> str:
        """Ready means every stage answers: the first handle call sets up its routing, which
        must not happen inside a request's deadline."""
        if self.retrieval is not None and self.ranking is not None:
            await self.retrieval.ping.remote()
            await self.ranking.ping.remote()
        return "ok"


def build_apps(
    bundles: dict[str, str],
    features: FeatureConfig,
    cfg: ServingConfig,
    faults: Path | None = None,
) -> dict[str, Any]:
    """model version -> its Serve application (run each under `app_name(version)`)."""
    model_version, retrieval, ranking = (
        cast(Any, ModelVersion),
        cast(Any, Retrieval),
        cast(Any, Ranking),
    )
    fault_file = str(faults) if faults else None
    apps = {}
    queue = {"max_ongoing_requests": cfg.replica_queue}
    for version, bundle in bundles.items():
        node = model_version.options(name=f"model-v{version}", **queue)
        if cfg.topology == "fused":
            apps[version] = node.bind(version, cfg, (bundle, features, fault_file))
        else:
            args = (bundle, version, features, cfg, fault_file)
            apps[version] = node.bind(
                version,
                cfg,
                None,
                retrieval.options(name=f"retrieval-v{version}", **queue).bind(*args),
                ranking.options(name=f"ranking-v{version}", **queue).bind(*args),
            )
    return apps


def app_name(version: str) -> str:
    return f"vidrec-v{version}"


def run_apps(
    bundles: dict[str, str],
    features: FeatureConfig,
    cfg: ServingConfig,
    faults: Path | None = None,
) -> dict[str, Any]:
    """Deploy every version's app (Serve must be started); model version -> handle."""
    apps = build_apps(bundles, features, cfg, faults)
    return {v: serve.run(a, name=app_name(v), route_prefix=None) for v, a in apps.items()}
