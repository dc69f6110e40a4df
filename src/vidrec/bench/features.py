"""`vidrec bench features`: throughput and memory of the point-in-time join.

For each scale, a fresh worker process builds the full training set with the
DuckDB engine (rows/s, peak RSS of that process), then joins a sample of the
same rows the naive pandas way (`features/naive.py`) and checks both agree on
it. The speed-up is the ratio of the two rates, measured in the same run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vidrec.bench.datasets import cached_simulation
from vidrec.bench.features_table import table
from vidrec.bench.files import save
from vidrec.bench.machine import machine
from vidrec.config import FeatureConfig
from vidrec.data.validate import open_dataset
from vidrec.features.definitions import FEATURES
from vidrec.features.naive import engine_vs_naive
from vidrec.features.training_set import build_training_set


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker(scale: str, naive_rows: int, out: Path) -> dict[str, Any]:
    data = cached_simulation(scale)
    cfg = FeatureConfig()
    built = build_training_set(data, out / f"training-{scale}.parquet", cfg)
    (out / f"training-{scale}.parquet").unlink(missing_ok=True)
    peak_pit = _peak_rss_mb()
    sample = engine_vs_naive(open_dataset(data, cfg), cfg, FEATURES, naive_rows, seed=42)
    naive_rate = sample["rows"] / max(sample["naive_seconds"], 1e-9)
    return {
        "scale": scale,
        "rows": built["rows"],
        "input_impressions": built["input_rows"]["impressions"],
        "pit_seconds": built["seconds"],
        "pit_rows_per_s": built["rows_per_second"],
        "pit_peak_rss_mb": peak_pit,
        "naive_rows": sample["rows"],
        "naive_seconds": round(sample["naive_seconds"], 3),
        "naive_rows_per_s": round(naive_rate),
        "engine_same_sample_seconds": round(sample["engine_seconds"], 3),
        "speedup_vs_naive": round(built["rows_per_second"] / naive_rate, 1),
        "naive_vs_engine_max_abs_diff": max(r["max_abs_diff"] for r in sample["features"].values()),
        "peak_rss_mb": _peak_rss_mb(),
    }


def run(scales: list[str], naive_rows: int, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in scales:
        cached_simulation(scale)  # outside the worker: not part of its RSS or time
        proc = subprocess.run(
            [sys.executable, "-m", "vidrec.bench.features", scale, str(naive_rows), str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bench worker for {scale} failed:\n{proc.stderr[-4000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {"benchmark": "features", "machine": machine(), "results": results}
    files = save(out, "features", report, table(report))
    _plot(results, Path(files["plot"]))
    return report | files


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [r["scale"] for r in results]
    x = np.arange(len(labels))
    for dx, key, label in (
        (-0.2, "pit_rows_per_s", "DuckDB PIT join"),
        (0.2, "naive_rows_per_s", "naive pandas (sample)"),
    ):
        values = [r[key] for r in results]
        bars = ax.bar(x + dx, values, 0.4, label=label)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    ax.set_ylim(bottom=1, top=max(r["pit_rows_per_s"] for r in results) * 300)
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("rows / second (log)")
    ax.set_title("Point-in-time feature join throughput")
    ax.legend(loc="upper center", ncols=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))))
