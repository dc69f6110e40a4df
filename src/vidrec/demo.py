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
