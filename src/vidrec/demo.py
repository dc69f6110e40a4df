"""`make demo` / `vidrec demo`: the lifecycle on embedded defaults, one step at a time.

Today: simulate a platform, build the point-in-time training set, prove the
leakage guard and the skew check on it, then run the training pipeline and
register its model as the champion in a fresh embedded registry. Later
stages (serve, monitor, roll out) append their steps here.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from vidrec.config import FeatureConfig, sim_config
from vidrec.data.simulate import simulate
from vidrec.errors import LeakageError
from vidrec.features.definitions import FEATURES
from vidrec.features.leaky import leaky_feature_set
from vidrec.features.skew import check_skew
from vidrec.features.training_set import build_training_set


def run(out: Path, scale: str = "demo", seed: int = 0) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    t0 = time.perf_counter()
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
    ok = skew["passed"] and steps["leakage_guard"]["rejected"] and steps["train"]["registered"]
    return {
        "ok": ok,
        "out": str(out),
        "feature_set": FEATURES.name,
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
    }


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
    settings.write_text(
        f'[features]\nonline_store = "{cfg.online_store}"\n\n'
        f'[registry]\nroot = "{(out / "registry").resolve()}"\n'
    )
    return {"store": cfg.online_store, "snapshot": snap, "rows": rows, "history": events,
            "settings": str(settings)}  # fmt: skip


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
