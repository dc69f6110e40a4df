"""The rollout controller driving a real InferenceService's `canaryTrafficPercent` on a real
kube-apiserver (KServe's v0.20.0 CRDs; no KServe controller, so nothing acts on it):
every step, the promotion and the rollback are read back from the API server."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from k8s_cluster import ControlPlane
from rollout_fakes import GOOD, SLOW, Clock, Registry, Script
from vidrec.config import AnalysisPolicy, RolloutPolicy, ShadowPolicy
from vidrec.errors import ConfigError, InvalidInput, NotFound
from vidrec.rollout.controller import Controller
from vidrec.rollout.file_store import FileRolloutStore
from vidrec.rollout.kserve_router import API_VERSION, CHAMPION, GROUP, PLURAL, KServeRouter
from vidrec.rollout.local import start_rollout
from vidrec.rollout.traffic_router import Routes

pytestmark = pytest.mark.integration

POLICY = RolloutPolicy(
    interval_s=10,
    step_s=20,
    steps=(10, 50),
    failure_limit=2,
    shadow=ShadowPolicy(duration_s=0),
    analysis=AnalysisPolicy(min_requests=10, min_impressions=100),
)


@pytest.fixture
def world(k8s: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    ns = f"t{zlib.crc32(request.node.name.encode()):08x}"
    api = k8s.api_client()
    k8s.create_inference_service(k8s.namespace(ns), "vidrec", "1")
    objects = client.CustomObjectsApi(api)
    router, store, reg, clock = (
        KServeRouter(api, ns, "vidrec"),
        FileRolloutStore(tmp_path / "rollout.json"),
        Registry(),
        Clock(),
    )
    script = Script()
    ctl = Controller(store, router, script, reg, clock=clock)  # type: ignore[arg-type]
    return {
        "ctl": ctl,
        "router": router,
        "store": store,
        "reg": reg,
        "clock": clock,
        "script": script,
        "objects": objects,
        "ns": ns,
    }


def predictor(w: dict[str, Any]) -> tuple[str, int | None, str | None]:
    """(model version in the spec, canaryTrafficPercent, champion annotation) as stored."""
    obj = w["objects"].get_namespaced_custom_object(GROUP, API_VERSION, w["ns"], PLURAL, "vidrec")
    pred = obj["spec"]["predictor"]
    env = {e["name"]: e["value"] for e in pred["containers"][0]["env"]}
    notes = obj["metadata"].get("annotations", {})
    return env["VIDREC_MODEL_VERSION"], pred.get("canaryTrafficPercent"), notes.get(CHAMPION)


def run(w: dict[str, Any], seconds: float) -> list[tuple[str, int | None, str | None]]:
    """Tick the controller once a second; the InferenceService after each change."""
    seen = [predictor(w)]
    end = w["clock"].t + seconds
    while w["clock"].t < end:
        w["clock"].t += 1
        w["ctl"].tick()
        if (now := predictor(w)) != seen[-1]:
            seen.append(now)
    return seen[1:]


def test_a_good_challenger_steps_through_canary_percents_to_promotion(
    world: dict[str, Any],
) -> None:
    w = world
    assert w["router"].get_routes() == Routes(champion="1")
    start_rollout(w["store"], w["router"], w["reg"], "2", POLICY, now=w["clock"].t)  # type: ignore[arg-type]
    assert run(w, 60) == [("2", 10, "1"), ("2", 50, "1"), ("2", None, "2")]
    assert w["router"].get_routes() == Routes(champion="2")
    assert w["store"].get().status.phase == "promoted"
    assert w["reg"].aliases == {"champion": 2}


def test_a_bad_challenger_is_rolled_back_to_the_previous_revision(world: dict[str, Any]) -> None:
    w = world
    start_rollout(w["store"], w["router"], w["reg"], "2", POLICY, now=w["clock"].t)  # type: ignore[arg-type]
    assert run(w, 1) == [("2", 10, "1")]
    assert w["router"].get_routes() == Routes("1", "2", 10.0)
    w["script"].challenger = SLOW
    # 0 % sends every request to the previously rolled-out revision (the champion) at once;
    # the challenger's spec stays, idle, until the next rollout replaces it
    assert run(w, 30) == [("2", 0, "1")]
    assert w["store"].get().status.phase == "rolled_back"
    assert w["router"].get_routes() == Routes(champion="1")
    # the next rollout starts from the champion the annotation remembers
    w["script"].challenger = GOOD
    start_rollout(w["store"], w["router"], w["reg"], "3", POLICY, now=w["clock"].t)  # type: ignore[arg-type]
    assert run(w, 1) == [("3", 10, "1")]


def test_a_policy_kserve_cannot_carry_out_is_refused_before_anything_moves(
    world: dict[str, Any],
) -> None:
    w = world
    with pytest.raises(InvalidInput, match=r"shadow\.duration_s"):
        start_rollout(w["store"], w["router"], w["reg"], "2", RolloutPolicy(), now=0)  # type: ignore[arg-type]
    half = POLICY.model_copy(update={"steps": (10.0, 12.5)})
    with pytest.raises(InvalidInput, match=r"steps\[1\].*whole percent"):
        start_rollout(w["store"], w["router"], w["reg"], "2", half, now=0)  # type: ignore[arg-type]
    assert w["store"].get() is None and predictor(w) == ("1", None, None)


def test_missing_objects_and_containers_are_named(world: dict[str, Any], k8s: ControlPlane) -> None:
    w = world
    with pytest.raises(NotFound, match=rf"{w['ns']}/nope"):
        KServeRouter(k8s.api_client(), w["ns"], "nope").get_routes()
    with pytest.raises(ConfigError, match="'server'"):
        KServeRouter(k8s.api_client(), w["ns"], "vidrec", container="server").get_routes()
