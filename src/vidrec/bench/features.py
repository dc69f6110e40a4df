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
import time
from pathlib import Path
from typing import Any

import numpy as np

from vidrec.bench.datasets import cached_simulation
from vidrec.config import FeatureConfig
from vidrec.data.validate import open_dataset
from vidrec.features.definitions import FEATURES
from vidrec.features.naive import naive_join
from vidrec.features.pit import PointInTime
from vidrec.features.skew import compare
from vidrec.features.training_set import build_training_set, default_build_ts, rows_sql
from vidrec.features.transform import finish


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker(scale: str, naive_rows: int, out: Path) -> dict[str, Any]:
    data = cached_simulation(scale)
    cfg = FeatureConfig()
    built = build_training_set(data, out / f"training-{scale}.parquet", cfg)
    peak_pit = _peak_rss_mb()

    ds = open_dataset(data, cfg)
    rows = ds.con.execute(
        f"SELECT request_id, ts, as_of, user_id, video_id, device, session_position FROM "
        f"({rows_sql(cfg, default_build_ts(ds))}) USING SAMPLE {naive_rows} ROWS "
        "(reservoir, 42)"
    ).df()
    raw, naive_s = naive_join(ds.con, FEATURES, rows, cfg.last_n)
    pit = PointInTime(ds.con, FEATURES, cfg.last_n)
    ds.con.register("__bench_rows", rows)
    t0 = time.perf_counter()
    engine = ds.con.execute(pit.select("__bench_rows")).df()
    engine_sample_s = time.perf_counter() - t0
    names = [f.name for f in FEATURES.batch] + [t.name for t in FEATURES.transforms]
    agree = compare(finish(engine, FEATURES), finish(raw, FEATURES), names)
    worst = max(r["max_abs_diff"] for r in agree.values())
    (out / f"training-{scale}.parquet").unlink(missing_ok=True)
    return {
        "scale": scale,
        "rows": built["rows"],
        "input_impressions": built["input_rows"]["impressions"],
        "pit_seconds": built["seconds"],
        "pit_rows_per_s": built["rows_per_second"],
        "pit_peak_rss_mb": peak_pit,
        "naive_rows": len(rows),
        "naive_seconds": round(naive_s, 3),
        "naive_rows_per_s": round(len(rows) / max(naive_s, 1e-9)),
        "engine_same_sample_seconds": round(engine_sample_s, 3),
        "speedup_vs_naive": round(built["rows_per_second"] / (len(rows) / max(naive_s, 1e-9)), 1),
        "naive_vs_engine_max_abs_diff": worst,
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
    report = {"benchmark": "features", "machine": _machine(), "results": results}
    (out / "features.json").write_text(json.dumps(report, indent=2))
    _plot(results, out / "features.png")
    report["plot"] = str(out / "features.png")
    return report


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [r["scale"] for r in results]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [r["pit_rows_per_s"] for r in results], 0.4, label="DuckDB PIT join")
    ax.bar(x + 0.2, [r["naive_rows_per_s"] for r in results], 0.4, label="naive pandas")
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("rows / second (log)")
    ax.set_title("Point-in-time feature join throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))))
