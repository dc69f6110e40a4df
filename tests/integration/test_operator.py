"""The ModelRollout operator (kopf) against a real API server: a ModelRollout applied with
kubectl goes canary -> promoted or is rolled back, moving a real InferenceService's
`canaryTrafficPercent`; its status, history and Kubernetes Events are read back.
Measurements are scripted here (tests/rollout_fakes.py); the real-metrics path is
tests/integration/test_rollout.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from helpers import wait_for
from k8s_cluster import ControlPlane, operator_running
from rollout_fakes import SLOW, Registry, Script
from vidrec.config import Settings
from vidrec.deploy.crd import crd
from vidrec.deploy.kopf_crd import crd as peering_crd
from vidrec.rollout.kserve_router import API_VERSION, GROUP, PLURAL
from vidrec.rollout.operator import Operator, router_factory

pytestmark = pytest.mark.integration
VIDREC = str(Path(sys.executable).with_name("vidrec"))

POLICY = {"interval_s": 0.5, "step_s": 1.5, "steps": [10, 50], "shadow": {"duration_s": 0},
          "analysis": {"min_requests": 10, "min_impressions": 100}}  # fmt: skip


@pytest.fixture(scope="module")
def crds(k8s: ControlPlane) -> ControlPlane:
    path = k8s.dir / "modelrollout-crd.yaml"
    path.write_text(yaml.safe_dump(crd()))
    k8s.apply_crds([path])
    return k8s


@pytest.fixture
def world(crds: ControlPlane, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    k8s = crds
    ns = f"op{zlib.crc32(request.node.name.encode()):08x}"
    api = k8s.api_client()
    k8s.create_inference_service(k8s.namespace(ns), "vidrec", "1")
    objects = client.CustomObjectsApi(api)
    script, reg = Script(), Registry()
    op = Operator(api, ns, script, reg, router_factory(api, ns, Settings()))  # type: ignore[arg-type]
    with operator_running(k8s, op):
        yield {"k8s": k8s, "ns": ns, "objects": objects, "script": script, "reg": reg}


def apply_rollout(w: dict[str, Any], version: str) -> None:
    mro = {"apiVersion": "vidrec.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "release", "namespace": w["ns"]},
           "spec": {"version": version, "policy": POLICY,
                    "target": {"inferenceService": "vidrec", "router": "kserve"}}}  # fmt: skip
    w["k8s"].run("kubectl", "apply", "-f", "-", stdin=yaml.safe_dump(mro))


def rollout(w: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = w["objects"].get_namespaced_custom_object(
        "vidrec.io", "v1alpha1", w["ns"], "modelrollouts", "release"
    )
    return obj


def predictor(w: dict[str, Any]) -> tuple[str, int | None]:
    obj = w["objects"].get_namespaced_custom_object(GROUP, API_VERSION, w["ns"], PLURAL, "vidrec")
    pred = obj["spec"]["predictor"]
    return pred["containers"][0]["env"][0]["value"], pred.get("canaryTrafficPercent")


def watch_until(
    w: dict[str, Any],
    done: Callable[[dict[str, Any]], bool],
    final: tuple[str, int | None],
    timeout_s: float = 60,
) -> list[tuple[str, int | None]]:
    """Poll until `done(ModelRollout)` and the InferenceService is `final` (the status is
    stored before the routes are applied); the InferenceService states seen on the way."""
    seen: list[tuple[str, int | None]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        if not seen or predictor(w) != seen[-1]:
            seen.append(predictor(w))
        obj = rollout(w)
        if done(obj) and seen[-1] == final:
            return seen
        assert time.monotonic() < deadline, f"timed out; status: {obj.get('status')}"
        time.sleep(0.05)


def events(w: dict[str, Any]) -> list[tuple[str, str]]:
    items = client.CoreV1Api(w["k8s"].api_client()).list_namespaced_event(w["ns"]).items
    ours = [e for e in items if e.involved_object.kind == "ModelRollout"]
    return [
        (e.type, e.reason) for e in sorted(ours, key=lambda e: int(e.metadata.resource_version))
    ]


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase


def test_a_model_rollout_is_stepped_to_promotion_with_status_and_events(
    world: dict[str, Any],
) -> None:
    w = world
    apply_rollout(w, "2")
    seen = watch_until(w, phase_is("promoted"), final=("2", None))
    assert seen[0] in (("1", None), ("2", 10))
    assert ("2", 50) in seen  # each step reached the InferenceService
    status = rollout(w)["status"]
    # no shadow phase: the start is the advance to the first step
    assert [e["action"] for e in status["history"]] == ["advance", "advance", "promote"], status
    assert rollout(w)["spec"]["champion"] == "1"  # stored by the operator at the start
    assert w["reg"].aliases == {"champion": 2}
    deadline = time.monotonic() + 10
    while events(w) != [("Normal", "Advance"), ("Normal", "Advance"), ("Normal", "Promote")]:
        assert time.monotonic() < deadline, events(w)
        time.sleep(0.1)


def test_a_failing_challenger_is_rolled_back_and_a_warning_posted(world: dict[str, Any]) -> None:
    w = world
    w["script"].challenger = SLOW
    apply_rollout(w, "2")
    # all traffic back on the previous revision
    watch_until(w, phase_is("rolled_back"), final=("2", 0))
    status = rollout(w)["status"]
    assert "latency_p99" in status["reason"]
    assert w["reg"].aliases == {"champion": 1}
    deadline = time.monotonic() + 10
    while ("Warning", "Rollback") not in events(w):
        assert time.monotonic() < deadline, events(w)
        time.sleep(0.1)


def test_a_policy_kserve_cannot_carry_out_is_refused_with_an_event(
    world: dict[str, Any],
) -> None:
    w = world
    target = {"inferenceService": "vidrec", "router": "kserve"}
    mro = {"apiVersion": "vidrec.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "release", "namespace": w["ns"]},
           "spec": {"version": "2", "target": target}}  # fmt: skip
    w["k8s"].run("kubectl", "apply", "-f", "-", stdin=yaml.safe_dump(mro))
    deadline = time.monotonic() + 20
    while ("Warning", "Refused") not in events(w):
        assert time.monotonic() < deadline, events(w)
        time.sleep(0.1)
    assert "status" not in rollout(w) or "phase" not in rollout(w)["status"]
    assert predictor(w) == ("1", None)  # nothing moved


def vidrec(w: dict[str, Any], *args: str) -> dict[str, Any]:
    """`vidrec ARGS --kube NS/release --json` against the test cluster."""
    env = {**os.environ, "KUBECONFIG": str(w["k8s"].kubeconfig)}
    out = subprocess.run([VIDREC, *args, "--kube", f"{w['ns']}/release", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_cli_drives_a_model_rollout_as_it_drives_a_local_one(world: dict[str, Any]) -> None:
    w = world
    slow = {**POLICY, "step_s": 600}  # a step the test cuts short
    mro = {"apiVersion": "vidrec.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "release", "namespace": w["ns"]},
           "spec": {"version": "2", "policy": slow,
                    "target": {"inferenceService": "vidrec", "router": "kserve"}}}  # fmt: skip
    w["k8s"].run("kubectl", "apply", "-f", "-", stdin=yaml.safe_dump(mro))
    watch_until(w, phase_is("canary"), final=("2", 10))
    status = vidrec(w, "rollout", "status")
    assert (status["version"], status["phase"], status["weight"]) == ("2", "canary", 10)
    done = vidrec(w, "rollout", "promote", "--wait", "30")
    assert done["handled"] and done["phase"] == "promoted", done
    watch_until(w, phase_is("promoted"), final=("2", None))
    # the next release re-points the same object; the operator starts it from v2
    started = vidrec(w, "rollout", "start", "3", "--wait", "30")
    assert (started["version"], started["champion"], started["phase"]) == ("3", "2", "canary")
    refused = subprocess.run(
        [VIDREC, "rollout", "start", "4", "--kube", f"{w['ns']}/release", "--json"],
        env={**os.environ, "KUBECONFIG": str(w["k8s"].kubeconfig)}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0 and "still canary" in refused.stdout + refused.stderr
    back = vidrec(w, "rollout", "rollback", "--wait", "30")
    assert back["handled"] and back["phase"] == "rolled_back", back
    watch_until(w, phase_is("rolled_back"), final=("3", 0))


class Counting(Operator):
    """An operator replica that counts the passes it makes (0 while kopf pauses it)."""

    passes = 0

    def reconcile(self, name: str) -> None:
        self.passes += 1
        super().reconcile(name)


def test_of_two_replicas_one_acts_and_the_other_takes_over(crds: ControlPlane) -> None:
    """Leader election: two replicas share a KopfPeering (as the chart's Deployment does);
    only the one with the higher priority reconciles. Stopped mid-rollout, the other takes
    over and finishes it, with no step taken twice."""
    k8s, ns = crds, "peering"
    path = k8s.dir / "kopfpeering-crd.yaml"
    path.write_text(yaml.safe_dump(peering_crd()))
    k8s.apply_crds([path])
    api = k8s.api_client()
    k8s.create_inference_service(k8s.namespace(ns), "vidrec", "1")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
               "metadata": {"name": "vidrec-operator", "namespace": ns}}  # fmt: skip
    k8s.run("kubectl", "apply", "-f", "-", stdin=yaml.safe_dump(peering))
    objects = client.CustomObjectsApi(api)
    w = {"k8s": k8s, "ns": ns, "objects": objects}
    script, reg = Script(), Registry()
    replicas = [Counting(api, ns, script, reg, router_factory(api, ns, Settings()))  # type: ignore[arg-type]
                for _ in range(2)]  # fmt: skip
    with ExitStack() as a, ExitStack() as b:
        stacks = [a, b]
        for stack, op in zip(stacks, replicas, strict=True):
            stack.enter_context(operator_running(k8s, op, peering="vidrec-operator"))
        wait_for("both replicas in the KopfPeering", lambda: len(peers(objects, ns)) >= 2,
                 timeout_s=30)  # fmt: skip
        time.sleep(3)  # a replica that saw the other late pauses now
        passes = [op.passes for op in replicas]
        slow = {**POLICY, "step_s": 6}
        mro = {"apiVersion": "vidrec.io/v1alpha1", "kind": "ModelRollout",
               "metadata": {"name": "release", "namespace": ns},
               "spec": {"version": "2", "policy": slow,
                        "target": {"inferenceService": "vidrec", "router": "kserve"}}}  # fmt: skip
        k8s.run("kubectl", "apply", "-f", "-", stdin=yaml.safe_dump(mro))
        watch_until(w, phase_is("canary"), final=("2", 10))
        acted = [op.passes - n for op, n in zip(replicas, passes, strict=True)]
        assert sorted(acted)[0] == 0 and sorted(acted)[1] > 0, f"passes per replica: {acted}"
        leader = acted.index(max(acted))
        stacks[leader].close()  # the leader's pod goes away mid-canary
        follower = replicas[1 - leader]
        before = follower.passes
        watch_until(w, phase_is("promoted"), final=("2", None), timeout_s=90)
        assert follower.passes > before, "the remaining replica never took over"
    history = [e["action"] for e in rollout(w)["status"]["history"]]
    assert history == ["advance", "advance", "promote"], history
    assert reg.aliases == {"champion": 2}


def peers(objects: Any, ns: str) -> dict[str, Any]:
    """The KopfPeering's status: one entry per live replica."""
    obj = objects.get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings",
                                               "vidrec-operator")  # fmt: skip
    return dict(obj.get("status") or {})
