"""Rollouts on the real stack: `vidrec serve` (Ray Serve behind KServe) with champion v1 and
challenger v2 loaded, a real Prometheus scraping it, the MLflow registry, simulated traffic
with feedback flowing all along, and the controller (in-process, or `vidrec rollout run`
as a process for the restart test). Faults make the bad challengers: a slow ranker, a
ranker that orders at random. Not one request may fail through any of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from k8s_cluster import ControlPlane, operator_running
from serving_server import start_server
from vidrec.config import AlertConfig, MonitoringConfig, load_settings
from vidrec.deploy.crd import crd
from vidrec.monitoring.prometheus import PrometheusProvider
from vidrec.monitoring.prometheus_server import PrometheusProcess
from vidrec.monitoring.rules import write_prometheus_files
from vidrec.ports import free_port
from vidrec.registry.registry import open_registry
from vidrec.rollout.k8s_store import ModelRolloutStore, point_at
from vidrec.rollout.local import open_controller, open_router, open_store, start_rollout
from vidrec.rollout.measure import PrometheusMeasurer
from vidrec.rollout.operator import Operator, router_factory
from vidrec.rollout.state import Rollout
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.routing import RouteTable
from vidrec.traffic.continuous import Continuous

pytestmark = pytest.mark.integration

# Sized for this 2-core machine's slow spells: at 40 req/s the stack took 1.3 cores, and a
# spell of half speed (the replica's stage times doubled) tipped serving into queueing, the
# champion's p99 near 1 s, and good challengers were rolled back on the 0.1 s SLO (CI, 3
# runs). At 20 req/s the challenger's share of the first step (20 %) and of the shadow
# (0.2) gives it the requests it had at 10 % and 0.1 of 40 req/s.
RATE = 20.0
FIRST_STEP = 20.0
PROMOTED = [("start", 0), ("advance", FIRST_STEP), ("advance", 50), ("promote", 100)]
POLICY = f"""
[rollout.policy]
interval_s = 3
step_s = 6
steps = [{FIRST_STEP:g}, 50]
failure_limit = 2
inconclusive_limit = 6
[rollout.policy.shadow]
duration_s = 4
# low enough that a 0.12 s ranker is not swamped by shadow calls: its latency must be
# caught in the canary, by the latency check
fraction = 0.2
min_requests = 10
min_overlap = 0.0  # a random ranker must be caught by engagement, not overlap
[rollout.policy.analysis]
window_s = 6
min_requests = 15
min_impressions = 300
latency_slo_s = 0.1
latency_max_regression = 1.0
error_ratio_max = 0.02
"""


@pytest.fixture(scope="module")
def stack(
    served_models: dict[str, Any], small_sim: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("rollout")
    with start_server(served_models, "fused", name="rollout") as server:
        cfg = MonitoringConfig(serving_target=f"127.0.0.1:{server['port']}", scrape_interval_s=1,
                               alerts=AlertConfig(rule_window_s=5, alert_for_s=0))  # fmt: skip
        files = write_prometheus_files(cfg, tmp / "prometheus")
        with PrometheusProcess(files["prometheus.yml"], tmp / "tsdb") as prom:
            traffic = Continuous(server["url"], small_sim, RATE).start()
            try:
                yield {"server": server, "prom": prom.url, "traffic": traffic, "tmp": tmp,
                       "models": served_models}  # fmt: skip
            finally:
                traffic.stop()
                reg = open_registry(load_settings(served_models["tmp"] / "cfg.toml").registry)
                reg.set_alias("champion", 1)  # the serving tests expect v1 and v2 there
                reg.set_alias("challenger", 2)


@pytest.fixture
def rollout(stack: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A fresh rollout setting per test: champion v1 serving, no faults, traffic on."""
    tmp = stack["tmp"] / request.node.name
    tmp.mkdir()
    cfg_file = tmp / "cfg.toml"
    base = stack["models"]["config"]
    cfg_file.write_text(
        base + f'[monitoring]\nprometheus_url = "{stack["prom"]}"\n'
        f'[rollout]\nstate = "{tmp / "rollout.json"}"\nroutes = "{stack["server"]["routes"]}"\n'
        f"metrics_port = {free_port()}\n" + POLICY
    )
    settings = load_settings(cfg_file)
    reg = open_registry(settings.registry)
    reg.set_alias("champion", 1)
    reg.set_alias("challenger", 2)
    FileRouteSource(stack["server"]["routes"]).set(RouteTable(champion="1"))
    stack["server"]["faults"].write_text('{"faults": []}')
    stack["traffic"].on.set()
    failed_before = stack["traffic"].failed()
    yield {"settings": settings, "cfg": cfg_file, "registry": reg, "tmp": tmp, **stack}
    stack["traffic"].on.set()
    assert stack["traffic"].failed() == failed_before, "requests failed during the rollout"


def drive(r: dict[str, Any], timeout_s: float = 120, until: Any = None) -> Rollout:
    """Run the controller in this process until the rollout ends (or `until(rollout)`)."""
    ctl = open_controller(r["settings"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ctl.tick()
        ro = ctl.store.get()
        assert ro is not None
        if (until and until(ro)) or ro.status.finished:
            return ro
        time.sleep(0.5)
    pytest.fail(f"rollout did not finish in {timeout_s} s: {ctl.store.get()}")


def begin(r: dict[str, Any]) -> None:
    s = r["settings"]
    start_rollout(open_store(s), open_router(s), r["registry"], "2", s.rollout.policy)


def why(ro: Rollout) -> str:
    """The reason and every analysed check that did not pass, for assertion messages."""
    bad = [f"{e.action} {c.name}: {c.detail}" for e in ro.status.history for c in e.checks
           if c.result in ("fail", "inconclusive")]  # fmt: skip
    return f"{ro.status.reason}; " + " | ".join(bad[-6:])


def steps(ro: Rollout) -> list[tuple[str, float]]:
    return [(e.action, e.weight) for e in ro.status.history if e.action != "hold"]


def test_a_good_challenger_is_promoted(rollout: dict[str, Any]) -> None:
    r = rollout
    begin(r)
    ro = drive(r)
    assert ro.status.phase == "promoted", why(ro)
    assert steps(ro) == PROMOTED
    last = {c.name: c for c in ro.status.history[-1].checks}
    assert {"latency_p99", "error_ratio", "ctr", "watch_time", "drift_alerts"} <= set(last)
    assert all(c.result == "pass" for c in last.values())
    table = FileRouteSource(r["server"]["routes"]).get()
    assert (table.champion, table.challenger) == ("2", None)
    assert r["registry"].get("champion").version == 2
    assert r["registry"].get("2").tags["rollout"] == "promoted"
    assert "challenger" not in r["registry"].get("2").aliases
    # the shadow phase really shadowed: Prometheus saw the comparisons
    prom = PrometheusProvider(r["prom"])
    assert prom.query('sum(vidrec_shadow_requests_total{outcome="compared"})')[0].value > 0


def test_a_slow_challenger_is_rolled_back(rollout: dict[str, Any]) -> None:
    r = rollout
    slow = {"faults": [{"stage": "ranking", "version": "2", "delay_s": 0.12}]}
    r["server"]["faults"].write_text(json.dumps(slow))
    begin(r)
    ro = drive(r)
    assert ro.status.phase == "rolled_back"
    # caught in the canary by latency, or already in shadow, where its calls miss the
    # deadline (which depends on this machine's load): either way by its slowness
    checks = ro.status.history[-1].checks
    failed = {c.name for c in checks if c.result == "fail"}
    allowed = {"latency_p99", "latency_vs_champion", "shadow_error_ratio"}
    assert failed and failed <= allowed, [c for c in checks if c.result == "fail"]
    assert max(e.weight for e in ro.status.history) <= FIRST_STEP  # never past the first step
    table = FileRouteSource(r["server"]["routes"]).get()
    assert (table.champion, table.challenger, table.canary_percent) == ("1", None, 0)
    info = r["registry"].get("2")
    assert info.tags["rollout"] == "rolled_back"
    assert info.tags["rollout_reason"] == ro.status.reason
    assert r["registry"].get("champion").version == 1


def test_a_random_ranker_is_rolled_back_on_engagement(rollout: dict[str, Any]) -> None:
    r = rollout
    bad = {"faults": [{"stage": "ranking", "version": "2", "shuffle": True}]}
    r["server"]["faults"].write_text(json.dumps(bad))
    # on the small test platform a random ranker is only ~15 % worse: the per-cohort test
    # needs one long step at half the users to see it before promotion
    rollout = r["settings"].rollout
    policy = rollout.policy.model_copy(
        update={
            "steps": (50.0,),
            "step_s": 80.0,  # ~8000 impressions each at RATE
            # latency is not under test here (a loaded CI machine's p99 once rolled it back)
            "analysis": rollout.policy.analysis.model_copy(
                update={"min_impressions": 4000, "latency_slo_s": 1.0}
            ),
        }
    )
    r["settings"] = r["settings"].model_copy(
        update={"rollout": rollout.model_copy(update={"policy": policy})})  # fmt: skip
    begin(r)
    ro = drive(r, timeout_s=240)
    assert ro.status.phase == "rolled_back", why(ro)
    assert "ctr" in ro.status.reason or "watch_time" in ro.status.reason
    failed = [c for c in ro.status.history[-1].checks if c.result == "fail"]
    assert failed and all(c.name in ("ctr", "watch_time", "shadow_overlap") for c in failed)


def test_no_traffic_stays_inconclusive_and_pauses(rollout: dict[str, Any]) -> None:
    r = rollout
    r["traffic"].on.clear()
    time.sleep(8)  # the analysis window empties
    begin(r)
    ro = drive(r, until=lambda ro: ro.status.paused)
    r["traffic"].on.set()
    assert ro.status.phase == "shadow" and ro.status.paused
    assert ro.status.failures == 0 and ro.status.inconclusive == 6
    assert all(c.result != "pass" for c in ro.status.checks if c.name.startswith("shadow"))
    # still paused later: a pause waits for a human
    ctl = open_controller(r["settings"])
    time.sleep(4)
    ctl.tick()
    assert ctl.store.get().status.paused


def requested(store: Any) -> bool:
    ro = store.get()
    return ro is not None and ro.spec.request is not None


def cli_args(r: dict[str, Any], *args: str) -> list[str]:
    return [sys.executable, "-m", "vidrec", "rollout", *args, "--config", str(r["cfg"]), "--json"]


def cli(r: dict[str, Any], *args: str) -> dict[str, Any]:
    out = subprocess.run(cli_args(r, *args), capture_output=True, text=True, timeout=120)
    return parsed(out.stdout, out.stderr)


def parsed(stdout: str, stderr: str) -> dict[str, Any]:
    assert stdout, stderr
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def test_manual_promote_and_abort(rollout: dict[str, Any]) -> None:
    r = rollout
    begin(r)
    passed = drive(r, until=lambda ro: ro.status.phase == "canary" and ro.status.checks
                   and all(c.result == "pass" for c in ro.status.checks))  # fmt: skip
    stop = threading.Event()
    ctl = threading.Thread(target=open_controller(r["settings"]).run, args=(stop, 0.3))
    # the controller starts once the CLI's request is stored, so the request meets the
    # analysis that passed, not a later one (a fresh canary step can be inconclusive)
    promote = subprocess.Popen(cli_args(r, "promote", "--wait", "60"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    store, deadline = open_store(r["settings"]), time.monotonic() + 60
    while not requested(store) and time.monotonic() < deadline:
        time.sleep(0.1)
    ctl.start()
    try:
        out = parsed(*promote.communicate(timeout=120))
        assert out["handled"] and out["phase"] == "promoted", out
        assert passed.status.phase == "canary"
        assert out["history"][-1]["reason"] == "promote requested by cli"
        time.sleep(1)
        assert FileRouteSource(r["server"]["routes"]).get().champion == "2"
        # a second rollout, aborted by hand: traffic back to the champion, nothing marked bad
        r["registry"].set_alias("champion", 1)
        FileRouteSource(r["server"]["routes"]).set(RouteTable(champion="1"))
        out = cli(r, "start", "2")
        assert out["phase"] == "shadow"
        out = cli(r, "abort", "--wait", "20")
        assert out["handled"] and out["phase"] == "aborted", out
        status = cli(r, "status")
        assert status["phase"] == "aborted" and status["history"][-1]["action"] == "abort"
        time.sleep(1)
        table = FileRouteSource(r["server"]["routes"]).get()
        assert (table.champion, table.challenger) == ("1", None)
        assert r["registry"].get("2").tags["rollout"] == "aborted"
        refused = subprocess.run(
            [sys.executable, "-m", "vidrec", "rollout", "promote", "--config", str(r["cfg"]),
             "--json"], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode == 1 and "already aborted" in refused.stdout
    finally:
        stop.set()
        ctl.join()


def test_controller_restart_mid_rollout_resumes_without_double_steps(
    rollout: dict[str, Any],
) -> None:
    r = rollout
    begin(r)
    args = [sys.executable, "-m", "vidrec", "rollout", "run", "--until-done", "--timeout", "150",
            "--config", str(r["cfg"]), "--json"]  # fmt: skip
    log = r["tmp"] / "controller.log"
    with open(log, "w") as out:
        first = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
        store_path = r["settings"].rollout.state
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ro = Rollout.model_validate_json(store_path.read_text())
            if ro.status.phase == "canary":
                break
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # no clean-up: as an OOM kill would
        first.wait()
    before = Rollout.model_validate_json(store_path.read_text())
    assert before.status.phase == "canary" and before.status.weight == FIRST_STEP
    done = subprocess.run(args, capture_output=True, text=True, timeout=200)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["phase"] == "promoted", summary
    ro = Rollout.model_validate_json(store_path.read_text())
    assert steps(ro) == PROMOTED
    # the step the killed controller began was held for its full time, not restarted
    advances = [e for e in ro.status.history if e.action in ("advance", "promote")]
    assert advances[1].at - advances[0].at >= r["settings"].rollout.policy.step_s


def test_the_operator_releases_a_model_rollout_on_real_metrics(
    rollout: dict[str, Any], k8s: ControlPlane
) -> None:
    """The cluster path on the same real stack: a ModelRollout applied with kubectl, the
    operator (kopf) measuring with real Prometheus, moving serving's route table; then a
    slow release of the old version rolled back by itself. Status and Events checked."""
    r, s = rollout, rollout["settings"]
    crd_file = r["tmp"] / "crd.yaml"
    crd_file.write_text(yaml.safe_dump(crd()))
    k8s.apply_crds([crd_file])
    ns = k8s.namespace("realmetrics")
    api = k8s.api_client()
    measurer = PrometheusMeasurer(PrometheusProvider(r["prom"]))
    op = Operator(api, ns, measurer, r["registry"], router_factory(api, ns, s))
    store = ModelRolloutStore(api, ns, "release")
    policy = s.rollout.policy.model_dump(mode="json")
    # The control plane shares the 2 cores: its bursts once put 5 of 19 requests of the
    # good v2 over the absolute 0.1 s SLO (that check is proven on its own above), and lift
    # the champion's p99 near 0.1 s, so a 0.12 s ranker is no longer clearly slower. Here
    # the bad one misses serving's 0.5 s deadline instead: every answer it gives is the
    # fallback, caught as errors or relative to the champion, whatever the load.
    policy["analysis"]["latency_slo_s"] = 1.0
    target = {"inferenceService": "vidrec", "router": "app"}
    with operator_running(k8s, op):
        point_at(store, "2", policy, target)
        ro = await_phase(store, "2", ("promoted",))
        assert steps(ro) == PROMOTED
        assert FileRouteSource(r["server"]["routes"]).get().champion == "2"
        assert r["registry"].get("champion").version == 2
        # v1 again, now past the deadline: the challenger this time, rolled back by itself
        slow = {"faults": [{"stage": "ranking", "version": "1", "delay_s": 0.6}]}
        r["server"]["faults"].write_text(json.dumps(slow))
        point_at(store, "1", policy, target)
        ro = await_phase(store, "1", ("rolled_back",))
        assert max(e.weight for e in ro.status.history) <= FIRST_STEP, why(ro)
        failed = {c.name for c in ro.status.history[-1].checks if c.result == "fail"}
        allowed = {"error_ratio", "latency_vs_champion", "shadow_error_ratio"}
        assert failed and failed <= allowed, why(ro)
        table = FileRouteSource(r["server"]["routes"]).get()
        assert (table.champion, table.challenger) == ("2", None)
        r["server"]["faults"].write_text('{"faults": []}')
    events = client.CoreV1Api(api).list_namespaced_event(ns).items
    events.sort(key=lambda e: int(e.metadata.resource_version))
    reasons = [e.reason for e in events if e.reason != "Hold"]  # holds that failed a check
    assert reasons[:5] == ["Start", "Advance", "Advance", "Promote", "Start"], reasons
    # the slow one is caught in shadow or at the first canary step
    assert reasons[5:] in (["Rollback"], ["Advance", "Rollback"]), reasons


def await_phase(
    store: Any, version: str, phases: tuple[str, ...], timeout_s: float = 150
) -> Rollout:
    deadline = time.monotonic() + timeout_s
    while True:
        ro = store.get()
        if ro and ro.spec.version == version and ro.status.phase in phases and ro.status.finalized:
            return ro
        assert time.monotonic() < deadline, f"v{version} not {phases}: {ro and why(ro)}"
        time.sleep(0.5)
