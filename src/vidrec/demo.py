"""`make demo` / `vidrec demo`: the lifecycle on embedded defaults, one step at a time.

Simulate a platform, build the point-in-time training set, prove the leakage
guard and the skew check on it, run the training pipeline and register its
model as the champion in a fresh embedded registry, then serve it under a real
Prometheus and the drift monitor: normal simulated users, then an injected new
market, which the monitor flags, alerts on and retrains for; the rollout
controller then promotes the retrained challenger and rolls back a bad one.
What must hold, and what a terminal is shown: `vidrec.demo_summary`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vidrec.config import FeatureConfig, sim_config
from vidrec.data.simulate import simulate
from vidrec.demo_summary import failed
from vidrec.errors import LeakageError, NotReady
from vidrec.features.definitions import FEATURES
from vidrec.features.leaky import leaky_feature_set
from vidrec.features.skew import check_skew
from vidrec.features.training_set import build_training_set


def run(out: Path, scale: str = "demo", seed: int = 0) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    t0 = time.perf_counter()
    shutil.rmtree(out / "sim", ignore_errors=True)  # its own: a log ingested into it, too
    sim = simulate(sim_config(scale), "none", seed, out / "sim")
    steps["simulate"] = {k: sim[k] for k in ("counts", "ctr", "seconds")}
    cfg = FeatureConfig()
    built = build_training_set(out / "sim", out / "features" / "training.parquet", cfg)
    steps["features"] = {
        k: built[k]
        for k in (
            "rows",
            "positives",
            "label_pending",
            "rejected_total",
            "schema_hash",
            "seconds",
            "rows_per_second",
        )
    }
    skew = check_skew(out / "sim", cfg, sample=2000)
    steps["skew_check"] = {k: skew[k] for k in ("rows", "max_abs_diff", "passed", "seconds")}
    steps["leakage_guard"] = _leakage_demo(out, cfg)
    steps["train"] = _train(out, cfg)
    steps["online_store"] = _materialize(out)
    steps["monitoring"], steps["rollout"] = _lifecycle(out)
    wrong = failed(steps)
    summary = {
        "ok": not wrong,
        "failed": wrong,
        "out": str(out),
        "feature_set": FEATURES.name,
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": str(out / "summary.json"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _train(out: Path, cfg: FeatureConfig) -> dict[str, Any]:
    """The training pipeline into a fresh registry: its first model becomes the champion."""
    from vidrec.config import RegistryConfig, Settings
    from vidrec.training.run import run_training

    shutil.rmtree(out / "registry", ignore_errors=True)
    shutil.rmtree(out / "train", ignore_errors=True)
    settings = Settings(features=cfg, registry=RegistryConfig(root=out / "registry"))
    s = run_training(settings, out / "sim", run_dir=out / "train")
    keep = ("registered", "version", "alias", "gates_passed", "step_seconds", "test", "report")
    return {k: s.get(k) for k in keep}


def _materialize(out: Path) -> dict[str, Any]:
    """The online store serving reads, and `vidrec.toml` so `vidrec serve --config` finds
    this registry and store (see the README's serving section)."""
    from vidrec.data.validate import open_dataset
    from vidrec.features.materialize import load_history, materialize
    from vidrec.features.pit import PointInTime, as_of_value
    from vidrec.features.store import open_store
    from vidrec.features.training_set import default_build_ts

    db = (out / "online.db").resolve()
    db.unlink(missing_ok=True)
    cfg = FeatureConfig(online_store=f"sqlite:///{db}")
    ds = open_dataset(out / "sim", cfg)
    snap = as_of_value(cfg.refresh_seconds, default_build_ts(ds))
    pit = PointInTime(ds.con, FEATURES, cfg.last_n)
    store = open_store(cfg.online_store)
    try:
        rows, events = materialize(pit, store, snap), load_history(ds.con, store, pit, snap)
    finally:
        store.close()
    settings = out / "vidrec.toml"
    settings.write_text(settings_text(out.resolve(), cfg.online_store))
    return {"store": cfg.online_store, "snapshot": snap, "rows": rows, "history": events,
            "settings": str(settings)}  # fmt: skip


def settings_text(out: Path, online_store: str) -> str:
    """`out/vidrec.toml`: this demo's store and registry, and one route table that
    `make serve` serves from and `vidrec rollout` drives (both read it from here)."""
    return (
        f'[features]\nonline_store = "{online_store}"\n\n'
        f'[registry]\nroot = "{out / "registry"}"\n\n'
        f'[rollout]\nroutes = "{out / "serve" / "routes.json"}"\n'
        f'state = "{out / "serve" / "rollout.json"}"\n'
    )


def _leakage_demo(out: Path, cfg: FeatureConfig) -> dict[str, Any]:
    """Build one day with a feature that joins watches on start time: must be refused."""
    try:
        build_training_set(
            out / "sim",
            out / "features" / "leaky.parquet",
            cfg,
            fs=leaky_feature_set(),
            where="AND i.ts < (SELECT min(ts) + 86400 FROM impressions)",
        )
    except LeakageError as exc:
        return {"rejected": True, "features": exc.details.get("features"), "message": exc.message}
    return {"rejected": False}


def _lifecycle(out: Path, rate: float = 25.0, window_s: int = 10) -> tuple[Any, Any]:
    """Serve the champion, scrape it, the drift monitor and the rollout controller with a
    real Prometheus; drive simulated users for two windows, then inject the new-market drift
    for three: the monitor flags it, `VidrecFeatureDrift` fires, and a retraining runs
    through the gates. Then release the retrained challenger (promoted) and a bad one
    (rolled back) through the rollout controller."""
    from vidrec.config import AlertConfig, MonitoringConfig, load_settings
    from vidrec.monitoring.prometheus_server import PrometheusProcess
    from vidrec.monitoring.rules import write_prometheus_files
    from vidrec.ports import free_port

    settings_file = (out / "vidrec.toml").resolve()
    mon = out / "monitor"
    shutil.rmtree(mon, ignore_errors=True)
    shutil.rmtree(out / "rollout", ignore_errors=True)
    port = free_port()
    cfg = MonitoringConfig(
        serving_target=f"127.0.0.1:{port}", monitor_port=free_port(), scrape_interval_s=1,
        rollout_target=f"127.0.0.1:{free_port()}",
        window_s=window_s, interval_s=window_s, min_requests=int(rate * window_s / 3),
        sustained_windows=2, retrain_data=(out / "sim").resolve(),
        # seconds, not hours: the CTR alert tests one monitor window against the run before it
        alerts=AlertConfig(rule_window_s=window_s, ctr_window_s=window_s, alert_for_s=0),
    )  # fmt: skip
    files = write_prometheus_files(cfg, mon / "prometheus")
    with _served(out, settings_file, port) as url, \
            PrometheusProcess(files["prometheus.yml"], mon / "tsdb") as prom:  # fmt: skip
        cfg = cfg.model_copy(update={"prometheus_url": prom.url})
        settings = load_settings(settings_file)
        t0 = time.time()
        m = _drift_demo(out, settings, cfg, settings_file, url, rate)
        retrained = m["retraining"]
        if retrained.get("result") != "registered":
            return m, {"ok": False, "skipped": "the retraining registered no challenger"}
        from vidrec import demo_rollout

        r = demo_rollout.run(out, settings, cfg, url, rate, str(retrained["version"]))
        m["dashboards"] = _dashboards(prom.url, out / "dashboards", t0)
        return m, r


def _dashboards(prom: str, out: Path, t0: float) -> dict[str, Any]:
    """PNG previews of every dashboard over the whole lifecycle (docs/dashboards come
    from here)."""
    from vidrec.deploy.preview import overview, render

    return overview(render(prom, out, t0, time.time(), window="30s"))


@contextlib.contextmanager
def _served(out: Path, settings_file: Path, port: int) -> Iterator[str]:
    """`vidrec serve` on the demo's settings, ready."""
    from vidrec.serving.process import serve_process

    mon, url = out / "monitor", f"http://127.0.0.1:{port}"
    args = ["--port", str(port), "--config", str(settings_file),
            "--routes", str((mon / "routes.json").resolve()),
            "--faults", str((mon / "faults.json").resolve())]  # fmt: skip
    with serve_process(args, (mon / "home").resolve(), mon / "serve.log") as proc:
        deadline = time.monotonic() + 300
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise NotReady(f"vidrec serve did not start; see {mon / 'serve.log'}")
            time.sleep(0.5)
        yield url


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/v2/models/vidrec/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _drift_demo(
    out: Path, settings: Any, cfg: Any, settings_file: Path, url: str, rate: float
) -> dict[str, Any]:
    from prometheus_client import start_http_server

    from vidrec.monitoring.alibi_detector import alibi_detectors
    from vidrec.monitoring.metrics import MonitorMetrics
    from vidrec.monitoring.monitor import DriftMonitor
    from vidrec.monitoring.prometheus import PrometheusProvider
    from vidrec.monitoring.reference import References
    from vidrec.monitoring.retrain import LocalRetrainer
    from vidrec.pipeline.metrics import PipelineCollector
    from vidrec.registry.registry import open_registry
    from vidrec.traffic.replay import Drift, replay
    from vidrec.traffic.users import SimulatedUsers

    mon, prom = out / "monitor", PrometheusProvider(cfg.prometheus_url)
    metrics = MonitorMetrics()
    metrics.registry.register(PipelineCollector([out / "train", mon / "runs"]))
    http, _ = start_http_server(cfg.monitor_port, "127.0.0.1", registry=metrics.registry)
    monitor = DriftMonitor(
        cfg, prom, References(open_registry(settings.registry), mon / "bundles"),
        retrainer=LocalRetrainer(cfg.retrain_data, settings_file, mon / "runs"),
        events=mon / "events.jsonl", metrics=metrics, **alibi_detectors(cfg),
    )  # fmt: skip
    users = SimulatedUsers.load(out / "sim")
    normal, drifted = 2, 3
    traffic: dict[str, Any] = {}
    drive = threading.Thread(target=lambda: traffic.update(replay(
        url, users, rate, (normal + drifted) * cfg.window_s + 6, drift=Drift(
            0.6, after=int(normal * cfg.window_s * rate)))))  # fmt: skip
    monitor.warm()
    try:
        drive.start()
        t0, runs = time.monotonic(), []
        for k in range(1, normal + drifted + 1):  # on the clock: windows stay on the traffic
            time.sleep(max(0.0, t0 + k * cfg.window_s - time.monotonic()))
            runs.append(monitor.run_once())
        drive.join()
        alerts = _firing(prom, timeout_s=15)
        finished = monitor.await_retraining(timeout_s=900) or {"result": "none started"}
    finally:
        http.shutdown()
    champion = [r.get("variants", {}).get("champion", {}) for r in runs]
    statuses = [c.get("status") for c in champion]
    return {
        "windows": statuses,
        "normal_quiet": all(s != "drift" for s in statuses[1:normal]),
        "drift_detected": any(s == "drift" for s in statuses[normal:]),
        "drifting_features": sorted({f for s in champion[normal:] for f in s.get("drifting", [])}),
        "alerts_firing": alerts,
        "retraining": finished,
        "traffic": {k: traffic.get(k) for k in ("ok", "status", "newcomer_requests")},
        "events": str(mon / "events.jsonl"),
    }  # fmt: skip


def _firing(prom: Any, timeout_s: float) -> list[str]:
    """Alerts firing once the monitor's last results are scraped and the rules evaluated."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = sorted({s.labels["alertname"] for s in prom.query('ALERTS{alertstate="firing"}')})
        if "VidrecFeatureDrift" in names or time.monotonic() > deadline:
            return names
        time.sleep(1)
