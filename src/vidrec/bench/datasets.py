"""Simulated datasets for benchmarks, cached under ~/.cache/vidrec keyed by version."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vidrec.config import sim_config
from vidrec.data.simulate import simulate

SIM_VERSION = 3  # bump when the simulator's output changes


def cache_root() -> Path:
    return Path(os.environ.get("VIDREC_CACHE", Path.home() / ".cache" / "vidrec"))


def cached_simulation(scale: str, seed: int = 0, scenario: str = "none") -> Path:
    cfg = sim_config(scale)
    digest = hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode()).hexdigest()
    path = cache_root() / "sim" / f"v{SIM_VERSION}-{scale}-{digest[:8]}-{scenario}-seed{seed}"
    if not (path / "manifest.json").exists():
        simulate(cfg, scenario, seed, path)  # type: ignore[arg-type]
    return path
