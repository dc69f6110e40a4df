"""Every dashboard panel returns data from a real Prometheus scraping the local stack.

The stack is the local demo's, in small: `vidrec serve` (Ray Serve behind KServe) under
simulated users with feedback, a few bad requests and a deadline-missing spell (errors and
degraded answers are panels too), the drift monitor exporting its tests and the pipeline's
newest runs, and the rollout controller releasing v2 through shadow and canary. Then
`vidrec dashboards render` draws every dashboard from that Prometheus: a panel whose
queries all come back empty fails the test, and the PNGs must be there."""

from __future__ import annotations

import json
import subprocess
import sys
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
from vidrec.deploy.dashboards import DASHBOARDS
from vidrec.monitoring.alibi_detector import ChiSquareDetector
from vidrec.monitoring.metrics import MonitorMetrics
from vidrec.monitoring.monitor import DriftMonitor
from vidrec.monitoring.prometheus import PrometheusProvider
from vidrec.monitoring.prometheus_server import PrometheusProcess
from vidrec.monitoring.reference import References
from vidrec.monitoring.retrain import LocalRetrainer
from vidrec.monitoring.rules import write_prometheus_files
from vidrec.pipeline.metrics import PipelineCollector
from vidrec.ports import free_port
from vidrec.registry.registry import open_registry
from vidrec.rollout.local import open_controller, open_router, open_store, start_rollout
from vidrec.rollout.metrics import RolloutMetrics
from vidrec.traffic.continuous import Continuous

pytestmark = pytest.mark.integration

WINDOW_S = 5
POLICY = """
[rollout.policy]
interval_s = 2
step_s = 8
steps = [50]
[rollout.policy.shadow]
duration_s = 10
fraction = 0.5
min_requests = 10
min_overlap = 0.0
[rollout.policy.analysis]
window_s = 6
min_requests = 10
min_impressions = 100
latency_slo_s = 1.0
"""


@pytest.fixture(scope="module")
def history(
    served_models: dict[str, Any], small_sim: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A Prometheus holding a few minutes of the whole stack's metrics (still running)."""
    tmp = tmp_path_factory.mktemp("dashboards")
    with start_server(served_models, "fused", name="dashboards") as server:
        cfg = MonitoringConfig(
            serving_target=f"127.0.0.1:{server['port']}", monitor_port=free_port(),
            rollout_target=f"127.0.0.1:{free_port()}", scrape_interval_s=1, window_s=WINDOW_S,
            min_requests=40, retrain=False, alerts=AlertConfig(rule_window_s=5, alert_for_s=0),
        )  # fmt: skip
        files = write_prometheus_files(cfg, tmp / "prometheus")
        with PrometheusProcess(files["prometheus.yml"], tmp / "tsdb") as prom:
            settings = _settings(served_models["config"], tmp, prom.url, cfg, server["routes"])
            registry = open_registry(settings.registry)
            try:
                t0 = time.time()
                _drive(server, settings, cfg.model_copy(update={"prometheus_url": prom.url}),
                       small_sim, served_models["tmp"], tmp)  # fmt: skip
                yield {"prom": prom.url, "t0": t0, "tmp": tmp}
            finally:
                registry.set_alias("champion", 1)  # the serving tests expect v1 and v2 there
                registry.set_alias("challenger", 2)


def _settings(config: str, tmp: Path, prom: str, cfg: MonitoringConfig, routes: Path) -> Any:
    port = cfg.rollout_target.rsplit(":", 1)[1]
    (tmp / "cfg.toml").write_text(
        config + f'[monitoring]\nprometheus_url = "{prom}"\n'
        f'[rollout]\nstate = "{tmp / "rollout.json"}"\nroutes = "{routes}"\n'
        f"metrics_port = {port}\n" + POLICY
    )
    return load_settings(tmp / "cfg.toml")


def _drive(
    server: dict[str, Any], settings: Any, cfg: MonitoringConfig, sim: Path, runs: Path,
    tmp: Path,
) -> None:  # fmt: skip
    registry = open_registry(settings.registry)
    registry.set_alias("champion", 1)
    registry.set_alias("challenger", 2)
    metrics = MonitorMetrics()
    metrics.registry.register(PipelineCollector([runs]))  # run1/, run2/ of served_models
    rollout_metrics = RolloutMetrics()
    servers = [
        start_http_server(cfg.monitor_port, "127.0.0.1", registry=metrics.registry)[0],
        start_http_server(settings.rollout.metrics_port, "127.0.0.1",
                          registry=rollout_metrics.registry)[0],
    ]  # fmt: skip
    monitor = DriftMonitor(
        cfg, PrometheusProvider(cfg.prometheus_url), References(registry, tmp / "bundles"),
        ChiSquareDetector(), LocalRetrainer(sim, None, tmp / "runs"), tmp / "events.jsonl",
        metrics,
    )  # fmt: skip
    traffic = Continuous(server["url"], sim, 30.0).start()
    try:
        scraped = PrometheusProvider(cfg.prometheus_url)
        wait_for("Prometheus scraping the model server", lambda: scraped.query("vidrec_model_info"),
                 timeout_s=30, interval_s=0.5)  # fmt: skip
        monitor.warm()
        # a spell of answers past the 0.5 s deadline: the degraded-responses panel
        server["faults"].write_text(json.dumps({"faults": [
            {"stage": "retrieval", "version": "1", "delay_s": 0.6}]}))  # fmt: skip
        time.sleep(4)
        server["faults"].write_text('{"faults": []}')
        _release(server, settings, monitor, rollout_metrics, registry)
        time.sleep(4)  # the last scrapes and rule evaluations
    finally:
        traffic.stop()
        for s in servers:
            s.shutdown()
    assert traffic.failed() == 0, "requests failed while the dashboards' history was made"


def _release(
    server: dict[str, Any], settings: Any, monitor: DriftMonitor, metrics: RolloutMetrics,
    registry: Any,
) -> None:  # fmt: skip
    """v2 through shadow and a 50 % step, with the monitor's windows and bad requests beside."""
    policy = settings.rollout.policy
    start_rollout(open_store(settings), open_router(settings), registry, "2", policy)
    ctl = open_controller(settings, metrics)
    deadline, next_window = time.monotonic() + 150, time.monotonic() + WINDOW_S
    while time.monotonic() < deadline:
        ctl.tick()
        ro = ctl.store.get()
        if time.monotonic() >= next_window:
            monitor.run_once()
            next_window += WINDOW_S
            bad = httpx.post(f"{server['url']}/v1/models/vidrec:predict",
                             content=b'{"instances": []}', timeout=5,
                             headers={"content-type": "application/json"})  # fmt: skip
            assert bad.status_code == 400, bad.text
        if ro is not None and ro.status.finished:
            return
        time.sleep(0.5)
    pytest.fail(f"the release did not finish in 150 s: {ctl.store.get()}")


def test_every_panel_returns_data_and_renders(history: dict[str, Any]) -> None:
    out = history["tmp"] / "previews"
    since = max(60.0, time.time() - history["t0"] + 5)
    done = subprocess.run(
        [sys.executable, "-m", "vidrec", "dashboards", "render", "--prometheus", history["prom"],
         "--since", str(since), "--window", "10s", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {d.uid for d in DASHBOARDS}
    empty = {uid: s["empty"] for uid, s in summary.items() if s["empty"]}
    assert not empty, f"panels without data: {empty}"
    for d in DASHBOARDS:
        assert len(summary[d.uid]["panels"]) == len(d.panels)
        png = out / f"{d.uid}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_a_query_for_a_series_nobody_exports_counts_as_empty(history: dict[str, Any]) -> None:
    """The check above can fail: the same evaluation reports a panel with no data."""
    from vidrec.deploy.dashboards import Dashboard, Panel, Query
    from vidrec.deploy.preview import evaluate, summary

    d = Dashboard("x", "x", "x", (Panel("ghost", "", (Query("vidrec_no_such_metric", "a"),)),))
    now = time.time()
    drawn = evaluate(d, PrometheusProvider(history["prom"]), now - 60, now, 5, "10s")
    assert summary(drawn)["empty"] == ["ghost"]
