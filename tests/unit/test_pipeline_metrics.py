"""The newest pipeline run as Prometheus metrics, read from its run.json records."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vidrec.pipeline.metrics import PipelineCollector, find_runs


def record(status: str, ndcg: float, gate_passed: bool, version: int | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"name": "build_dataset", "seconds": 2.5, "outputs": {"rows": 10}},
        {"name": "evaluate", "seconds": 4.0, "outputs": {"test": {
            "slates": {"lightgbm_ipw": {"ndcg10_clicks": ndcg, "note": "text is skipped"}},
            "retrieval": {"two_tower_ann": {"recall500_clicks": 0.6}}}}},
        {"name": "gate", "seconds": 0.0, "outputs": {"gate_report": {"gates": [
            {"name": "beats_popularity", "passed": gate_passed, "value": 0.38, "threshold": 0.32},
            {"name": "schema", "passed": True, "value": "abc", "threshold": "abc"}]}}},
    ]  # fmt: skip
    if version is not None:
        steps.append({"name": "register", "seconds": 0.1, "outputs": {"version": version}})
    return {"pipeline": "training", "status": status, "seconds": 7.0, "steps": steps}


def write(path: Path, rec: dict[str, Any], mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    os.utime(path, (mtime, mtime))


def scrape(collector: PipelineCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = CollectorRegistry()
    r.register(collector)
    text = generate_latest(r).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[
        (f"vidrec_pipeline_{name}", tuple(sorted({"pipeline": "training", **labels}.items())))
    ]


def test_the_newest_run_is_exported(tmp_path: Path) -> None:
    write(tmp_path / "demo/train/run.json", record("ok", 0.7, True, 1), mtime=1000)
    # a retraining two levels down, newer, rejected by a gate (nothing registered)
    write(tmp_path / "monitor/retrain-x/run/run.json", record("ok", 0.5, False, None), 2000)
    s = scrape(PipelineCollector([tmp_path / "demo", tmp_path / "monitor"]))
    assert value(s, "last_run_timestamp_seconds") == 2000
    assert value(s, "last_run_status", status="ok") == 1
    assert value(s, "last_run_status", status="failed") == 0
    assert value(s, "last_run_duration_seconds") == 7.0
    assert value(s, "step_duration_seconds", step="evaluate") == 4.0
    metric = {"table": "slates", "model": "lightgbm_ipw", "metric": "ndcg10_clicks"}
    assert value(s, "offline_metric", **metric) == 0.5
    assert value(s, "offline_metric", table="retrieval", model="two_tower_ann",
                 metric="recall500_clicks") == 0.6  # fmt: skip
    assert not any("note" in dict(k[1]).get("metric", "") for k in s)  # text is not a number
    assert value(s, "gate_passed", gate="beats_popularity") == 0
    assert value(s, "gate_passed", gate="schema") == 1
    assert value(s, "gate_threshold", gate="beats_popularity") == 0.32
    assert ("vidrec_pipeline_gate_value", (("gate", "schema"), ("pipeline", "training"))) not in s
    assert not any(k[0] == "vidrec_pipeline_registered_version" for k in s)


def test_a_changed_record_is_read_again_and_a_broken_one_skipped(tmp_path: Path) -> None:
    run = tmp_path / "runs/a/run.json"
    write(run, record("running", 0.6, True, None), mtime=1000)
    collector = PipelineCollector([tmp_path / "runs"])
    assert value(scrape(collector), "last_run_status", status="running") == 1
    write(run, record("failed", 0.6, True, 4), mtime=1100)
    s = scrape(collector)
    assert value(s, "last_run_status", status="failed") == 1
    assert value(s, "registered_version") == 4
    (tmp_path / "runs/b").mkdir()
    (tmp_path / "runs/b/run.json").write_text("{ half written")
    assert value(scrape(collector), "last_run_status", status="failed") == 1


def test_runs_are_found_at_most_two_levels_down(tmp_path: Path) -> None:
    for rel in ("run.json", "x/run.json", "x/run/run.json", "x/y/z/run.json"):
        write(tmp_path / rel, {"pipeline": "p"}, 1)
    found = [p.relative_to(tmp_path).as_posix() for p in find_runs([tmp_path])]
    assert sorted(found) == ["run.json", "x/run.json", "x/run/run.json"]
    assert find_runs([tmp_path / "missing"]) == []
