"""`TrafficRouter` over a KServe InferenceService's `canaryTrafficPercent` (Knative mode).

KServe splits requests between two revisions: the latest (the predictor as the spec says
now) gets P %, the previously rolled-out one the rest. So the challenger is the version in
the predictor spec, the champion is remembered in an annotation, and:
- canary at w %: spec version = challenger, canaryTrafficPercent = w;
- rollback: canaryTrafficPercent = 0, which sends everything back to the previous revision at
  once (the challenger's revision idles until the next rollout replaces it);
- promotion or a plain deploy: spec version = champion, no canaryTrafficPercent.

Unlike serving's own router it splits requests, not users (no sticky cohorts), and it
cannot shadow: `validate` refuses a policy with a shadow phase.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vidrec.config import RolloutPolicy
from vidrec.errors import ConfigError, Conflict, InvalidInput
from vidrec.rollout.kube import get_object
from vidrec.rollout.traffic_router import Routes

GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
CHAMPION = "vidrec.io/champion"  # annotation: the version the "prev" revision serves
VERSION_ENV = "VIDREC_MODEL_VERSION"  # the predictor container loads this registry version


class KServeRouter:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        container: str = "kserve-container",
    ) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace, self.name, self.container = namespace, name, container

    def validate(self, policy: RolloutPolicy) -> None:
        if policy.shadow.duration_s > 0:
            raise InvalidInput(
                "shadow.duration_s: KServe's canaryTrafficPercent cannot shadow requests; set "
                "it to 0 (or roll out with serving's own router)",
                field="shadow.duration_s",
            )
        for i, w in enumerate(policy.steps):
            if w != int(w):
                raise InvalidInput(
                    f"steps[{i}]: KServe's canaryTrafficPercent is a whole percent, got {w}",
                    field=f"steps[{i}]",
                )

    def get_routes(self) -> Routes:
        return _routes(self._get(), self.container)

    def set_routes(self, routes: Routes) -> None:
        if routes.shadow > 0:
            raise InvalidInput("KServe's canaryTrafficPercent cannot shadow requests")
        for _ in range(3):  # someone else wrote in between: re-read and try again
            isvc = self._get()
            want = _with_routes(isvc, routes, self.container)
            if want == isvc:
                return
            try:  # a replace carries resourceVersion: a concurrent write makes it 409
                self.objects.replace_namespaced_custom_object(
                    GROUP, API_VERSION, self.namespace, PLURAL, self.name, want
                )
                return
            except ApiException as e:
                if e.status != 409:
                    raise
        raise Conflict(f"InferenceService {self.namespace}/{self.name} keeps changing")

    def _get(self) -> dict[str, Any]:
        return get_object(self.objects, GROUP, API_VERSION, PLURAL, "InferenceService",
                          self.namespace, self.name)  # fmt: skip


def _routes(isvc: dict[str, Any], container: str) -> Routes:
    pred = isvc["spec"]["predictor"]
    latest = _env(pred, container)
    champion = isvc["metadata"].get("annotations", {}).get(CHAMPION, latest)
    pct = pred.get("canaryTrafficPercent")
    if latest == champion or pct is None or pct >= 100:
        return Routes(champion=latest)  # all traffic on the latest revision
    if pct == 0:
        return Routes(champion=champion)  # rolled back: all on the previous one
    return Routes(champion, latest, float(pct))


def _with_routes(isvc: dict[str, Any], routes: Routes, container: str) -> dict[str, Any]:
    """The InferenceService as `routes` need it (an unchanged copy when they already hold)."""
    out = copy.deepcopy(isvc)
    pred = out["spec"]["predictor"]
    notes = out["metadata"].setdefault("annotations", {})
    if routes.challenger is not None:
        if routes.weight != int(routes.weight):
            raise InvalidInput(f"weight {routes.weight}: canaryTrafficPercent is a whole percent")
        _set_env(pred, container, routes.challenger)
        pred["canaryTrafficPercent"] = int(routes.weight)
        notes[CHAMPION] = routes.champion
    elif _env(pred, container) != routes.champion and notes.get(CHAMPION) == routes.champion:
        pred["canaryTrafficPercent"] = 0  # rollback: the previous revision is the champion
    else:  # promotion (the latest revision already is the champion) or a plain deploy
        _set_env(pred, container, routes.champion)
        pred.pop("canaryTrafficPercent", None)
        notes[CHAMPION] = routes.champion
    return out


def _container(pred: dict[str, Any], name: str) -> dict[str, Any]:
    for c in pred.get("containers", []):
        if c.get("name") == name:
            return c
    raise ConfigError(f"the predictor has no container named {name!r}", container=name)


def _env(pred: dict[str, Any], container: str) -> str:
    for e in _container(pred, container).get("env", []):
        if e.get("name") == VERSION_ENV:
            return str(e.get("value", ""))
    raise ConfigError(f"container {container!r} does not set {VERSION_ENV}", env=VERSION_ENV)


def _set_env(pred: dict[str, Any], container: str, version: str) -> None:
    env = _container(pred, container).setdefault("env", [])
    for e in env:
        if e.get("name") == VERSION_ENV:
            e["value"] = version
            return
    env.append({"name": VERSION_ENV, "value": version})
