"""Run the training pipeline (`pipelines/training.yaml`) and summarise it in one dict.

Used by `vidrec train`, `vidrec pipeline run training`, `vidrec evaluate`
(stops after the evaluate step, registers nothing) and `make demo`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidrec.config import Settings
from vidrec.errors import InvalidInput
from vidrec.pipeline import definition, runner
from vidrec.pipeline.executor import default_executor
from vidrec.training.steps import Context


def run_training(
    settings: Settings,
    data: Path,
    oracle: Path | None = None,
    run_dir: Path | None = None,
    pipeline: str = "training",
    until: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    if not data.is_dir():
        raise InvalidInput(f"--data: {data} is not a directory of the log tables", file=str(data))
    if oracle is None and (data / "oracle").is_dir():
        oracle = data / "oracle"  # simulator output: add true-relevance metrics
    run_dir = run_dir or Path("out/runs") / time.strftime("%Y%m%dT%H%M%S")
    spec = definition.load(pipeline)
    params = {"data": str(data), "oracle": str(oracle) if oracle else None}
    ctx = Context(run_dir, settings)
    record = runner.run(spec, ctx, params, run_dir, default_executor(), until, on_step)
    return summarise(record)


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record[k] for k in ("pipeline", "run_id", "run_dir", "executor", "status")}
    steps = {s["name"]: s.get("outputs", {}) for s in record["steps"]}
    out["step_seconds"] = {s["name"]: s.get("seconds") for s in record["steps"]}
    if "evaluate" in steps:
        ev = steps["evaluate"]
        chosen = steps["train_ranker"]["chosen"]
        out["chosen"] = chosen
        out["validation"] = ev["validation"]
        out["test"] = _headline(ev["test"])
        out["report"], out["plot"] = ev["report"], ev["plot"]
    if "gate" in steps:
        out["gates_passed"] = steps["gate"]["passed"]
        out["gates"] = [
            {k: g[k] for k in ("name", "passed", "message")}
            for g in steps["gate"]["gate_report"]["gates"]
        ]
    if "register" in steps:
        out["registered"] = steps["register"]["registered"]
        out["version"] = steps["register"].get("version")
        out["alias"] = steps["register"].get("alias")
        out["bundle"] = steps["register"]["bundle"]
    out["seconds"] = record.get("seconds")
    return out


def _headline(test: dict[str, Any]) -> dict[str, Any]:
    """The numbers the README quotes; the full report is in evaluation.json."""
    cand = test["candidates"].get("models", {})
    return {
        "ndcg20_true_candidates": {m: v["ndcg20_true"] for m, v in cand.items()},
        "ndcg10_true_slates": {
            m: v["ndcg10_true"] for m, v in test["slates"].items() if "ndcg10_true" in v
        },
        "ndcg10_clicks_slates": {m: v["ndcg10_clicks"] for m, v in test["slates"].items()},
        "ips_ctr_top1_slates": {m: v["ips_ctr_top1"] for m, v in test["slates"].items()},
        "recall500": {
            m: {k: v for k, v in r.items() if k.startswith("recall500")}
            for m, r in test["retrieval"].items()
        },
    }
