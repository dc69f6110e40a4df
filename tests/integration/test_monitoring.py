"""The drift monitor on the real stack: `vidrec serve` (Ray Serve behind KServe), a real
Prometheus scraping it and the monitor with the generated config and rules, simulated
traffic with feedback. Normal traffic stays quiet; injected new-market traffic makes the
drift metric and its alert fire and starts a retraining that registers a challenger."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import start_http_server

from helpers import wait_for
from serving_server import start_server
from vidrec.config import AlertConfig, MonitoringConfig, load_settings
from vidrec.monitoring.alibi_detector import ChiSquareDetector, alibi_detectors
from vidrec.monitoring.metrics import MonitorMetrics
from vidrec.monitoring.monitor import DriftMonitor
from vidrec.monitoring.prometheus import PrometheusProvider
from vidrec.monitoring.prometheus_server import PrometheusProcess
from vidrec.monitoring.reference import References
from vidrec.monitoring.retrain import LocalRetrainer
from vidrec.monitoring.rules import write_prometheus_files
from vidrec.ports import free_port
from vidrec.registry.registry import open_registry
from vidrec.traffic.replay import Drift, replay
from vidrec.traffic.users import SimulatedUsers

pytestmark = pytest.mark.integration

WINDOW_S = 6
RATE = 30.0


@pytest.fixture(scope="module")
def stack(
    served_models: dict[str, Any], small_sim: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("monitoring")
    settings = load_settings(served_models["tmp"] / "cfg.toml")
    registry = open_registry(settings.registry)
    # the monitor's samples mode reads the request log: written every second here
    with start_server(served_models, "fused", name="monitoring",
                      serving="log_flush_s = 1.0") as server:  # fmt: skip
        cfg = MonitoringConfig(
            serving_target=f"127.0.0.1:{server['port']}",
            monitor_port=free_port(),
            scrape_interval_s=1,
            window_s=WINDOW_S,
            min_requests=60,
            sustained_windows=2,
            retrain_data=small_sim,
            alerts=AlertConfig(rule_window_s=5, alert_for_s=0),
        )
        files = write_prometheus_files(cfg, tmp / "prometheus")
        with PrometheusProcess(files["prometheus.yml"], tmp / "tsdb") as prom:
            metrics = MonitorMetrics()
            http, _ = start_http_server(cfg.monitor_port, "127.0.0.1", registry=metrics.registry)
            cfg = cfg.model_copy(update={"prometheus_url": prom.url})
            monitor = DriftMonitor(
                cfg,
                PrometheusProvider(prom.url),
                References(registry, tmp / "bundles"),
                ChiSquareDetector(),
                LocalRetrainer(small_sim, served_models["tmp"] / "cfg.toml", tmp / "runs"),
                tmp / "events.jsonl",
                metrics,
            )
            # samples mode beside it (not retraining): its own metrics, the server's log
            samples_cfg = cfg.model_copy(update={
                "mode": "samples", "request_log": server["log_dir"], "retrain": False,
                "online_ert": 200, "online_bootstraps": 2000})  # fmt: skip
            samples = DriftMonitor(
                samples_cfg, PrometheusProvider(prom.url), References(registry, tmp / "b2"),
                retrainer=LocalRetrainer(small_sim, None, tmp / "runs2"),
                events=tmp / "samples.jsonl", **alibi_detectors(samples_cfg),
            )  # fmt: skip
            scraped = PrometheusProvider(prom.url)
            try:
                wait_for("vidrec_model_info scraped", lambda: scraped.query("vidrec_model_info"),
                         timeout_s=30, interval_s=0.5)  # fmt: skip
            except AssertionError:
                targets = httpx.get(f"{prom.url}/api/v1/targets", timeout=5).json()
                pytest.fail(f"Prometheus has no vidrec_model_info: targets {targets}")
            try:
                yield {"server": server, "prom": PrometheusProvider(prom.url),
                       "monitor": monitor, "registry": registry, "sim": small_sim,
                       "events": tmp / "events.jsonl", "samples": samples}  # fmt: skip
            finally:
                http.shutdown()
                registry.set_alias("challenger", 2)  # the serving tests expect v2 there


def windows(
    s: dict[str, Any], n: int, drift: Drift | None, seed: int, monitor: str = "monitor"
) -> list[dict[str, Any]]:
    """n runs of `monitor`, one per window, while simulated traffic flows."""
    users = SimulatedUsers.load(s["sim"])
    duration = n * WINDOW_S + 6.0  # outlasts the last window, which starts at the first answer
    flowing = threading.Event()
    traffic = threading.Thread(
        target=replay,
        args=(s["server"]["url"], users, RATE, duration),
        kwargs={"seed": seed, "drift": drift, "tick": lambda _n: flowing.set()},
    )
    s[monitor].warm()  # before the traffic: calibrating an online detector takes seconds
    traffic.start()
    runs = []
    try:
        assert flowing.wait(30), "no traffic answered in 30 s"
        t0 = time.monotonic()
        for k in range(1, n + 1):  # on the clock: a slow run must not shift the windows
            time.sleep(max(0.0, t0 + k * WINDOW_S - time.monotonic()))
            runs.append(s[monitor].run_once())
    finally:
        traffic.join()
    return runs


def test_no_traffic_is_insufficient_data_not_no_drift(stack: dict[str, Any]) -> None:
    run = stack["monitor"].run_once()
    assert run["result"] == "ok"
    assert run["variants"]["champion"]["status"] == "insufficient_data"
    got = stack["prom"].query('vidrec_drift_insufficient_data{variant="champion"}')
    insufficient = 'vidrec_drift_insufficient_data{variant="champion"}'
    wait_for(insufficient, lambda: _one(stack, insufficient) == 1, timeout_s=15, interval_s=0.5)
    assert got is not None


def test_normal_traffic_stays_quiet(stack: dict[str, Any]) -> None:
    runs = windows(stack, 3, None, seed=1)
    for run in runs[1:]:  # the first window may still hold the idle seconds before traffic
        champion = run["variants"]["champion"]
        assert champion["status"] == "ok", champion
        assert champion["drifting"] == [] and not champion["prediction_drift"]
        assert run["retraining"]["started"] is False
    assert not stack["prom"].query('ALERTS{alertname=~"VidrecFeatureDrift|VidrecPredictionDrift"}')
    # serving exports the hour of day its features are as of (the store's snapshot): the
    # window is compared with the reference block served nearest it, not the whole day
    champion = runs[-1]["variants"]["champion"]
    day = stack["monitor"].references.get(champion["version"]).hours
    assert len(day) == 6 and len(champion["reference_hours"]) == 1, champion
    assert champion["reference_hours"][0] in day


def test_new_market_drift_fires_the_alert_and_registers_a_challenger(
    stack: dict[str, Any],
) -> None:
    before = {v.version for v in stack["registry"].versions()}
    runs = windows(stack, 3, Drift(share=0.6), seed=2)
    champion = [r["variants"]["champion"] for r in runs]
    assert all(c["status"] == "drift" for c in champion[1:]), champion
    started = [r for r in runs if r["retraining"]["started"]]
    assert len(started) == 1, "one retraining per cooldown"
    assert "sustained drift over 2 windows" in started[0]["retraining"]["reason"]
    streak = 'max(vidrec_drift_windows{variant="champion"})'
    wait_for(f"{streak} >= 2", lambda: _one(stack, streak) >= 2, timeout_s=15, interval_s=0.5)
    firing = 'ALERTS{alertname="VidrecFeatureDrift",alertstate="firing",variant="champion"}'
    wait_for(firing, lambda: stack["prom"].query(firing), timeout_s=15, interval_s=0.5)
    finished = stack["monitor"].await_retraining(timeout_s=600)
    assert finished is not None, "no retraining finished in time"
    assert finished["result"] == "registered", finished
    assert finished["alias"] == "challenger"
    new = stack["registry"].get("challenger")
    assert new.version not in before
    assert stack["registry"].get("champion").version == 1  # never touched
    events = [json.loads(x) for x in stack["events"].read_text().splitlines()]
    assert any(e.get("retraining_finished", {}).get("result") == "registered" for e in events)


def test_samples_mode_tests_logged_values_and_streams_them_online(stack: dict[str, Any]) -> None:
    """Samples mode: the user features from serving's request log by KS, the online CVM
    detector fed the same rows; quiet on normal users, drifting on new-market users."""
    normal = windows(stack, 3, None, seed=3, monitor="samples")
    for run in normal[1:]:
        champion = run["variants"]["champion"]
        assert champion["status"] == "ok", champion
        assert "user_watches_28d" in champion["tested_on_values"]
    fed = normal[-1]["variants"]["champion"]["online"]["seen"]
    assert fed >= 60, normal[-1]["variants"]["champion"]
    drifted = windows(stack, 3, Drift(share=0.6), seed=4, monitor="samples")
    champion = [r["variants"]["champion"] for r in drifted]
    on_values = set(champion[-1]["tested_on_values"])
    assert any(set(c["drifting"]) & on_values for c in champion[1:]), champion
    online = champion[-1]["online"]
    assert online["drift"] and online["ratio"] >= 1.0 and online["seen"] > fed, online


def _one(s: dict[str, Any], promql: str) -> float:
    got = s["prom"].query(promql)
    return got[0].value if got else float("nan")
