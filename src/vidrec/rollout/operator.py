"""The ModelRollout operator: the local controller, with the rollout object in the cluster.

For each ModelRollout of its namespace, every few seconds: start it when its status does
not belong to its spec's version (champion from the router, `challenger` alias in the
registry, first status), then one `Controller.tick`. Every new history entry becomes a
Kubernetes Event on the object, so `kubectl describe modelrollout` tells the story.

`reconcile` is plain code over the Kubernetes API; `run` hosts it in kopf, which lists and
watches the objects, calls a timer per object, serves /healthz, and keeps replicas from
acting at once (kopf peering: each replica draws a distinct priority, the highest acts).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from vidrec.config import RolloutPolicy, Settings, parse
from vidrec.errors import Conflict, InvalidInput
from vidrec.registry.registry import Registry
from vidrec.rollout.controller import Controller, Measurer
from vidrec.rollout.k8s_store import ModelRolloutStore
from vidrec.rollout.local import start_rollout
from vidrec.rollout.metrics import RolloutMetrics
from vidrec.rollout.state import Event
from vidrec.rollout.traffic_router import TrafficRouter

log = logging.getLogger("vidrec.operator")
COMPONENT = "vidrec-operator"
_WARNING_ACTIONS = {"rollback", "abort", "pause", "refuse"}

RouterFor = Callable[[dict[str, Any]], TrafficRouter]


class Operator:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        measurer: Measurer,
        registry: Registry | None,
        router_for: RouterFor,
        metrics: RolloutMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api, self.namespace = api, namespace
        self.measurer, self.registry, self.router_for = measurer, registry, router_for
        self.metrics, self.clock = metrics, clock
        self.core = client.CoreV1Api(api)

    def reconcile(self, name: str) -> str | None:
        """One pass over one ModelRollout; the action taken, if any."""
        store = ModelRolloutStore(self.api, self.namespace, name)
        obj = store.read()
        router = self.router_for(obj["spec"]["target"])
        before = store.rollout_of(obj)
        if before is None:
            try:
                policy = parse(RolloutPolicy, obj["spec"].get("policy", {}), f"{store.ref} policy")
                before = start_rollout(store, router, self.registry, obj["spec"]["version"],  # type: ignore[arg-type]
                                       policy, now=self.clock())  # fmt: skip
            except (InvalidInput, Conflict) as e:
                self._post(obj, "Warning", "Refused", e.message)
                return "refuse"
            self._post_history(obj, before.status.history)
        seen = len(before.status.history)
        action = Controller(store, router, self.measurer, self.registry, self.metrics,
                            self.clock).tick()  # fmt: skip
        after = store.get()
        if after is not None and after.spec.version == before.spec.version:
            self._post_history(obj, after.status.history[seen:])
        return action

    def _post_history(self, obj: dict[str, Any], events: tuple[Event, ...]) -> None:
        for e in events:
            kind = "Warning" if e.action in _WARNING_ACTIONS else "Normal"
            message = f"{e.phase} at {e.weight:g} %: {e.reason}" if e.reason else e.phase
            self._post(obj, kind, e.action.capitalize(), message)

    def _post(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC)
        meta = obj["metadata"]
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.",
                                         namespace=self.namespace),
            involved_object=client.V1ObjectReference(
                api_version=obj["apiVersion"], kind=obj["kind"], name=meta["name"],
                namespace=self.namespace, uid=meta["uid"],
            ),
            reason=reason, message=message[:1024], type=kind, count=1,
            first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=COMPONENT),
        )  # fmt: skip
        try:
            self.core.create_namespaced_event(self.namespace, event)
        except client.ApiException:  # an event is a courtesy: never fail the rollout for it
            log.exception("cannot post event %s on %s", reason, meta["name"])


def router_factory(api: client.ApiClient, namespace: str, settings: Settings) -> RouterFor:
    """`spec.target` -> the router it names: serving's route table, or KServe's canary."""

    def router_for(target: dict[str, Any]) -> TrafficRouter:
        if target.get("router") == "kserve":
            from vidrec.rollout.kserve_router import KServeRouter

            return KServeRouter(api, namespace, target["inferenceService"])
        from vidrec.rollout.app_router import AppRouter
        from vidrec.serving.file_routes import FileRouteSource

        return AppRouter(FileRouteSource(settings.rollout.routes))

    return router_for
