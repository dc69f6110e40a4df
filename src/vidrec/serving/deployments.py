"""The Ray Serve applications: one per model version, answering `recommend`.

A version's app runs retrieval -> ranking -> business rules for a batch of
calls (`vidrec.serving.batcher`) and returns a `Served` per call. Topology
"fused" (the default) runs both stages in one replica, each stage once for
the whole batch, so a request makes one hop from the server; "split" makes Retrieval and Ranking
deployments of their own, scaled apart, composed by the version's replica.
Every hop costs milliseconds of scheduling on a small machine (`vidrec bench
serve` measures both). Routing, shadowing and the popularity fallback live in
the server process (`vidrec.serving.router`), which owns the deadline.
Every deployment asks for a fraction of a CPU: on a 2-core machine whole-CPU
replicas stay pending forever.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

from ray import serve
from ray.serve.handle import DeploymentHandle

from vidrec.config import RAY_CPUS, FeatureConfig, ServingConfig
from vidrec.errors import ConfigError
from vidrec.features.definitions import FEATURES
from vidrec.features.online import OnlineFeatures
from vidrec.features.store import open_store
from vidrec.serving import gc_pauses, priority
from vidrec.serving.api import RecommendRequest
from vidrec.serving.faults import FaultFile, shuffled
from vidrec.serving.model import ServingModel
from vidrec.serving.recommender import (
    Asked,
    Call,
    Failed,
    Outcome,
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
# Two of Ray Serve's replica defaults cost a small machine per call: a flushed access-log
# line, and user code on a second event loop thread each call hops to and back from (our
# batches hold the GIL: it overlapped nothing). Both off, as in Ray's own throughput mode
# (RAY_SERVE_THROUGHPUT_OPTIMIZED), the no-op's replica CPU at 100 req/s fell from 3.2-3.8
# to 2.2-2.8 ms per request (separate runs: see `vidrec bench serve`).
REPLICA: dict[str, Any] = {
    "ray_actor_options": {
        "num_cpus": CPU,
        "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}},
    },
    "logging_config": {"enable_access_log": False},
}


def by_value(handle: DeploymentHandle[Any]) -> DeploymentHandle[Any]:
    """Calls over the replica's gRPC server, arguments and results sent by value, instead of
    Ray tasks and the object store: 1 ms less CPU per request in the server, 0.5 in the
    replica, and p50 11-25 ms against 19-31 at 100 req/s (alternating runs, one cluster)."""
    return handle.options(_by_reference=False)


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
        return self.retrieve_many([(req, rid, ts)])[0]

    def rank(self, req: RecommendRequest, rid: str, ts: int, got: Retrieved) -> Ranked:
        return self.rank_many([(req, rid, ts)], [got])[0]

    def retrieve_many(self, calls: list[Asked]) -> list[Retrieved]:
        self.faults.apply("retrieval", self.version)
        return self.stages.retrieve_many(calls)

    def rank_many(self, calls: list[Asked], got: list[Retrieved]) -> list[Ranked]:
        self.faults.apply("ranking", self.version)
        ranked = self.stages.rank_many(calls, got)
        if not self.faults.shuffles(self.version):
            return ranked
        return [shuffled(r, rid) for r, (_, rid, _) in zip(ranked, calls, strict=True)]

    def ping(self) -> str:
        return "ok"


@serve.deployment(**REPLICA)
class Retrieval(VersionStages):
    """Split topology: the retrieval stage alone."""


@serve.deployment(**REPLICA)
class Ranking(VersionStages):
    """Split topology: the ranking stage alone."""


@serve.deployment(**REPLICA)
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
        self.retrieval = by_value(retrieval) if retrieval else None
        self.ranking = by_value(ranking) if ranking else None
        self.shadow_thread = priority.background(cfg.shadow_idle) if local else None

    async def recommend(self, calls: list[Call]) -> list[Outcome]:
        """One outcome per call, in order (the server batches calls while this replica is
        busy). A call's failure is its own `Failed`; None: the call reached this replica after
        its deadline, when the server had already answered from the fallback, so the model
        path is not run for nobody. A batch of shadow calls alone runs on the idle-priority
        thread (`vidrec.serving.priority`)."""
        if self.local is None:
            return list(await asyncio.gather(*(self._split(c) for c in calls)))
        if self.shadow_thread is not None and all(c.variant == "shadow" for c in calls):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.shadow_thread, self._fused, calls)
        return self._fused(calls)

    def _fused(self, calls: list[Call]) -> list[Outcome]:
        """The batch's live calls through each stage at once (CPU-bound, one batch at a time:
        the GIL would serialise it). A batch that fails is retried a call at a time, so a
        request that breaks the model path degrades alone."""
        now = time.time()
        live = [i for i, c in enumerate(calls) if now < c.deadline]
        out: list[Outcome] = [None] * len(calls)
        if not live:
            return out
        try:
            for i, served in zip(live, self._run([calls[i] for i in live]), strict=True):
                out[i] = served
        except Exception as exc:
            for i in live:
                out[i] = (
                    Failed(type(exc).__name__) if len(live) == 1 else self._fused([calls[i]])[0]
                )
        return out

    def _run(self, calls: list[Call]) -> list[Served]:
        assert self.local is not None
        asked = [(c.req, c.rid, c.ts) for c in calls]
        got = self.local.retrieve_many(asked)
        ranked = self.local.rank_many(asked, got)
        return [self._served(*x) for x in zip(calls, got, ranked, strict=True)]

    async def _split(self, c: Call) -> Outcome:
        if time.time() >= c.deadline:
            return None
        try:
            assert self.retrieval is not None and self.ranking is not None
            got = await self.retrieval.retrieve.remote(c.req, c.rid, c.ts)
            return self._served(c, got, await self.ranking.rank.remote(c.req, c.rid, c.ts, got))
        except Exception as exc:  # Ray wraps what the stage's replica raised
            return Failed(type(getattr(exc, "cause", None) or exc).__name__)

    def _served(self, c: Call, got: Retrieved, ranked: Ranked) -> Served:
        items = slate(c.req, got, ranked, self.cfg, request_rng(c.rid))
        timed = timings(got, ranked)
        resp = response(c.req, c.rid, c.ts, c.variant, self.version, items, timed)
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
    scaled = {**queue, "num_replicas": cfg.replicas}
    for version, bundle in bundles.items():
        if cfg.topology == "fused":
            node = model_version.options(name=f"model-v{version}", **scaled)
            apps[version] = node.bind(version, cfg, (bundle, features, fault_file))
        else:
            args = (bundle, version, features, cfg, fault_file)
            apps[version] = model_version.options(name=f"model-v{version}", **queue).bind(
                version,
                cfg,
                None,
                retrieval.options(name=f"retrieval-v{version}", **scaled).bind(*args),
                ranking.options(name=f"ranking-v{version}", **scaled).bind(*args),
            )
    return apps


def version_replicas(cfg: ServingConfig) -> int:
    """Replicas one version's app runs: fused, its model path's; split, the composer's and
    each stage's."""
    return cfg.replicas if cfg.topology == "fused" else 1 + 2 * cfg.replicas


def slots(cpus: float = RAY_CPUS) -> int:
    """Replicas of `CPU` each that a node of `cpus` starts."""
    return int(cpus / CPU + 1e-9)


def room(cfg: ServingConfig, cpus: float = RAY_CPUS) -> int:
    """Versions whose replicas all start at once in a node of `cpus`."""
    return slots(cpus) // version_replicas(cfg)


def check_fits(cfg: ServingConfig, versions: int, cpus: float = RAY_CPUS) -> None:
    """Refuse a configuration whose replicas cannot all start: Ray would leave the rest
    pending, and the server would never become ready."""
    if versions > room(cfg, cpus):
        asked = versions * version_replicas(cfg)
        given = "" if cfg.replicas_per_version is not None else " (its default)"
        raise ConfigError(
            f"serving.replicas_per_version = {cfg.replicas}{given}: {versions} model "
            f"version(s) of the {cfg.topology} topology need {asked} replicas of {CPU} CPU, "
            f"more than Ray's {cpus:g} CPUs hold ({slots(cpus)}); lower it",
            key="serving.replicas_per_version",
        )


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
    return {v: by_value(serve.run(a, name=app_name(v), route_prefix=None)) for v, a in apps.items()}


def stop_app(version: str) -> None:
    """Delete a version's app and its replicas (the router no longer calls it)."""
    serve.delete(app_name(version))
