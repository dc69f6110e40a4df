"""Local mode: the rollout object in a JSON file, serving's route table as the router,
Prometheus for measurements, the MLflow registry. What the CLI verbs do."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vidrec.config import RolloutPolicy, Settings
from vidrec.errors import Conflict, InvalidInput, NotFound
from vidrec.registry.registry import Registry
from vidrec.rollout.controller import Controller
from vidrec.rollout.decision import start
from vidrec.rollout.file_store import FileRolloutStore
from vidrec.rollout.metrics import RolloutMetrics
from vidrec.rollout.state import Request, RequestAction, Rollout, Spec
from vidrec.rollout.store import RolloutStore
from vidrec.rollout.traffic_router import TrafficRouter


def open_store(settings: Settings) -> FileRolloutStore:
    return FileRolloutStore(settings.rollout.state)


def open_router(settings: Settings) -> TrafficRouter:
    from vidrec.rollout.app_router import AppRouter
    from vidrec.serving.file_routes import FileRouteSource

    return AppRouter(FileRouteSource(settings.rollout.routes))


def open_controller(settings: Settings, metrics: RolloutMetrics | None = None) -> Controller:
    from vidrec.monitoring.prometheus import PrometheusProvider
    from vidrec.registry.registry import open_registry
    from vidrec.rollout.measure import PrometheusMeasurer

    provider = PrometheusProvider(settings.monitoring.prometheus_url)
    return Controller(open_store(settings), open_router(settings), PrometheusMeasurer(provider),
                      open_registry(settings.registry), metrics)  # fmt: skip


def start_rollout(
    store: RolloutStore,
    router: TrafficRouter,
    registry: Registry,
    version: str,
    policy: RolloutPolicy,
    now: float | None = None,
) -> Rollout:
    """A new rollout of `version` against what serves now; Conflict while another runs."""
    current = store.get()
    if current is not None and current.status.active:
        raise Conflict(
            f"the rollout of v{current.spec.version} is still {current.status.phase}: "
            "promote, abort or roll it back first",
            version=current.spec.version,
        )
    router.validate(policy)
    champion = router.get_routes().champion
    if version == champion:
        raise InvalidInput(f"v{version} is already the champion", version=version)
    try:
        registry.set_alias("challenger", int(version))
    except ValueError:
        raise InvalidInput(f"version must be a number, got {version!r}", version=version) from None
    now = time.time() if now is None else now
    ro = Rollout(spec=Spec(version=version, champion=champion, policy=policy),
                 status=start(policy, now))  # fmt: skip
    return store.put(ro, current.generation if current else None)


def request(
    store: RolloutStore, action: RequestAction, by: str = "cli"
) -> tuple[Request, Request | None]:
    """Ask the controller to promote / abort / roll back / pause / resume. The spec holds one
    request: returns it and the one it replaced, if that was not handled yet (it never
    will be: the latest word counts, and whoever asked is told)."""
    for _ in range(5):
        ro = store.get()
        if ro is None:
            raise NotFound("no rollout has been started (vidrec rollout start VERSION)")
        last = ro.spec.request
        pending = last if last is not None and last.id > ro.status.handled_request else None
        req = Request(id=max(last.id if last else 0, ro.status.handled_request) + 1,
                      action=action, at=time.time(), by=by)  # fmt: skip
        spec = ro.spec.model_copy(update={"request": req})
        try:
            store.put(ro.model_copy(update={"spec": spec}), ro.generation)
            return req, pending
        except Conflict:  # the controller wrote in between
            continue
    raise Conflict("the rollout keeps changing; try again")


def await_request(store: RolloutStore, req: Request, timeout_s: float) -> Rollout | None:
    """The rollout once the controller has handled `req`; None if it has not in time."""
    return await_rollout(store, lambda ro: ro.status.handled_request >= req.id, timeout_s)


def await_rollout(
    store: RolloutStore, done: Callable[[Rollout], bool], timeout_s: float
) -> Rollout | None:
    """The stored rollout once `done(rollout)`; None if that does not happen in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        ro = store.get()
        if ro is not None and done(ro):
            return ro
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def summary(ro: Rollout, history: int = 20) -> dict[str, Any]:
    """What `vidrec rollout status` shows."""
    st, spec = ro.status, ro.spec
    pending = spec.request if spec.request and spec.request.id > st.handled_request else None
    return {
        "version": spec.version,
        "champion": spec.champion,
        "phase": st.phase,
        "paused": st.paused,
        "weight": st.weight,
        "shadow_fraction": st.shadow_fraction,
        "step": st.step,
        "steps": list(spec.policy.steps),
        "reason": st.reason,
        "failures": st.failures,
        "inconclusive": st.inconclusive,
        "checks": [c.model_dump() for c in st.checks],
        "pending_request": pending.model_dump() if pending else None,
        "history": [e.model_dump(exclude={"checks"}) for e in st.history[-history:]],
        "generation": ro.generation,
    }
