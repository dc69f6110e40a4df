"""What `vidrec train` shows on a terminal: the run, a test table by model, the gates and
the registry, from the summary (`vidrec.training.run.summarise`'s fields)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vidrec.cli import app
from vidrec.training import run as training_run
from vidrec.training.summary_lines import render

SUMMARY: dict[str, Any] = {
    "pipeline": "training", "run_id": "20261205T004345-6d70b3", "run_dir": "out/demo/train",
    "executor": "local", "status": "ok", "seconds": 174.6,
    "step_seconds": {"build_dataset": 19.1, "train_ranker": 77.9, "register": 0.1},
    "chosen": "lightgbm_ipw",
    "test": {
        "ndcg20_true_candidates": {"popularity": 0.6311, "lightgbm_ipw": 0.7466},
        "ndcg10_true_slates": {"random": 0.7194, "popularity": 0.826, "lightgbm_ipw": 0.8845},
        "ndcg10_clicks_slates": {"random": 0.4871, "popularity": 0.7267, "lightgbm_ipw": 0.7132},
        "ips_ctr_top1_slates": {"random": 0.2052, "popularity": 0.3237, "lightgbm_ipw": 0.3847},
        "recall500": {"two_tower_ann": {"recall500_clicks": 0.7022, "recall500_fresh": 0.3573}},
    },
    "report": "out/demo/train/evaluate/evaluation.json",
    "plot": "out/demo/train/evaluate/evaluation.png",
    "gates_passed": True,
    "gates": [{"name": "finite_scores", "passed": True, "message": "every score is finite"},
              {"name": "beats_champion", "passed": True, "message": "no champion yet"}],
    "registered": True, "version": 1, "alias": "champion", "bundle": "out/demo/train/bundle",
}  # fmt: skip


def row(lines: list[str], model: str) -> list[str]:
    """The table row of `model`, split into cells."""
    (found,) = [ln.split() for ln in lines if ln.split()[:1] == [model]]
    return found


def test_a_registered_run_shows_its_steps_metrics_gates_and_version() -> None:
    lines = render(SUMMARY)
    assert lines[0] == ("run 20261205T004345-6d70b3: ok in 174.6 s "
                        "(local executor; out/demo/train)")  # fmt: skip
    assert "train_ranker 77.9 s" in lines[1]
    assert row(lines, "lightgbm_ipw") == ["lightgbm_ipw", "*", "0.8845", "0.7132", "0.3847",
                                          "0.7466"]  # fmt: skip
    # a model without a candidates score shows a dash there, not a shifted column
    assert row(lines, "random") == ["random", "0.7194", "0.4871", "0.2052", "-"]
    assert "recall@500 two_tower_ann: clicks 0.7022, fresh 0.3573" in lines
    assert "gates: 2 of 2 passed" in lines
    assert lines[-1] == "registered v1 as champion (out/demo/train/bundle)"
    assert len(lines) < 20  # the pretty-printed dict was ~120


def test_a_failed_gate_is_named_with_its_message_and_nothing_is_registered() -> None:
    s = copy.deepcopy(SUMMARY)
    s["gates"][1] = {"name": "beats_champion", "passed": False, "message": "0.30 < 0.38"}
    s.update(gates_passed=False, registered=False, version=None, alias=None)
    lines = render(s)
    assert "gates: 1 of 2 passed" in lines
    assert "  FAILED beats_champion: 0.30 < 0.38" in lines
    assert lines[-1] == "not registered: a gate failed"


def test_an_evaluation_has_no_gates_or_registry_lines() -> None:
    gone = ("gates", "gates_passed", "registered", "version", "alias", "bundle")
    s = {k: v for k, v in SUMMARY.items() if k not in gone}
    lines = render(s)
    assert not any(ln.startswith(("gates", "registered", "not registered")) for ln in lines)
    assert lines[-1].startswith("report: out/demo/train/evaluate/evaluation.json")


def test_a_run_stopped_before_evaluate_shows_its_steps_alone() -> None:
    s = {k: SUMMARY[k] for k in ("pipeline", "run_id", "run_dir", "executor", "status")}
    s.update(step_seconds={"build_dataset": 19.1}, seconds=None)
    assert render(s) == ["run 20261205T004345-6d70b3: ok in - s (local executor; out/demo/train)",
                         "steps: build_dataset 19.1 s"]  # fmt: skip


@pytest.mark.parametrize("registered", [True, False])
def test_vidrec_train_prints_the_lines_or_json_and_exits_3_when_a_gate_failed(
    registered: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = {**SUMMARY, "registered": registered}
    monkeypatch.setattr(training_run, "run_training", lambda *a, **k: s)
    runner = CliRunner()
    args = ["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run")]
    text = runner.invoke(app, args)
    assert text.exit_code == (0 if registered else 3)
    assert "training run" in text.output and "gates: 2 of 2 passed" in text.output
    assert "'step_seconds'" not in text.output  # not the dict
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == (0 if registered else 3)
    assert json.loads(as_json.output.splitlines()[0]) == s
