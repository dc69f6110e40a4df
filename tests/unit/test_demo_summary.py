"""`make demo`'s verdict and what a terminal is shown (the lifecycle itself runs in `make
demo`; here its summary is given)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vidrec import demo
from vidrec.cli import app
from vidrec.demo_summary import CHECKS, failed, render


def release(version: str, phase: str, exposure: float, checks: list[str]) -> dict[str, Any]:
    return {"version": version, "phase": phase, "reason": "...", "exposure": exposure,
            "phases": [{"t_s": 0.0, "action": "start"}, {"t_s": 37.7, "action": phase}],
            "failed_checks": checks, "first_failure_to_rollback_s": 3.1 if checks else None,
            "users": 766, "requests": 900, "failed_requests": 0}  # fmt: skip


def steps() -> dict[str, Any]:
    """The steps of a demo that passed (fields as `vidrec.demo.run` writes them)."""
    return {
        "simulate": {"counts": {"users": 30000, "videos": 5000, "impressions": 4369260},
                     "ctr": 0.069, "seconds": 2.4},
        "features": {"rows": 4303360, "positives": 296236, "label_pending": 65900,
                     "rejected_total": 0, "seconds": 23.7},
        "skew_check": {"rows": 1998, "max_abs_diff": 0.0, "passed": True, "seconds": 12.6},
        "leakage_guard": {"rejected": True, "features": ["user_watch_seconds_1d_by_start"]},
        "train": {"registered": True, "version": 1, "alias": "champion", "gates_passed": True,
                  "report": "out/demo/train/evaluate/evaluation.json"},
        "online_store": {"store": "sqlite:////x/online.db", "settings": "out/demo/vidrec.toml"},
        "monitoring": {"windows": ["ok", "ok", "drift", "drift", "drift"],
                       "normal_quiet": True, "drift_detected": True,
                       "drifting_features": ["age_code", "country_code"],
                       "alerts_firing": ["VidrecCTRDrop", "VidrecFeatureDrift"],
                       "retraining": {"result": "registered", "version": 2,
                                      "alias": "challenger"},
                       "dashboards": {"vidrec-serving": {"empty": ["Errors by type"]},
                                      "vidrec-rollout": {"empty": []}}},
        "rollout": {"ok": True, "good": release("2", "promoted", 0.198, []),
                    "bad": release("3", "rolled_back", 0.0561, ["ctr"])},
    }  # fmt: skip


def summary(s: dict[str, Any]) -> dict[str, Any]:
    wrong = failed(s)
    return {"ok": not wrong, "failed": wrong, "steps": s, "seconds": 719.5,
            "summary": "out/demo/summary.json"}  # fmt: skip


BREAK = {  # check -> how a demo fails it
    "skew_check": lambda s: s["skew_check"].update(passed=False),
    "leakage_guard": lambda s: s["leakage_guard"].update(rejected=False, features=None),
    "train": lambda s: s["train"].update(registered=False),
    "monitoring.quiet": lambda s: s["monitoring"].update(normal_quiet=False),
    "monitoring.drift": lambda s: s["monitoring"].update(drift_detected=False),
    "monitoring.alert": lambda s: s["monitoring"].update(alerts_firing=["VidrecCTRDrop"]),
    "rollout": lambda s: s["rollout"].update(ok=False),
}


def test_a_demo_that_shows_everything_passes() -> None:
    assert failed(steps()) == []


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_each_check_fails_alone(check: str) -> None:
    s = copy.deepcopy(steps())
    BREAK[check](s)
    assert failed(s) == [check]


def test_a_step_that_never_ran_fails_its_checks() -> None:
    s = steps()
    del s["rollout"]
    assert failed(s) == ["rollout"]
    s["rollout"] = {"ok": False, "skipped": "the retraining registered no challenger"}
    assert failed(s) == ["rollout"]
    assert any("skipped: the retraining" in line for line in render(summary(s)))
    s["rollout"] = {"ok": False, "good": release("2", "promoted", 0.2, []),
                    "bad": {"version": "3", "phase": "canary", "timed_out": True,
                            "failed_requests": 0, "exposure": 1.0}}  # fmt: skip
    line = next(x for x in render(summary(s)) if x.startswith("steps.rollout"))
    assert "v3 canary (the controller did not end it in time), 100.0 % of users" in line


def test_the_lines_say_what_each_step_did() -> None:
    lines = render(summary(steps()))
    text = "\n".join(lines)
    assert lines[0].startswith("steps.simulate") and "4,369,260 impressions" in lines[0]
    assert "rejected: user_watch_seconds_1d_by_start" in text
    assert "registered version 1 as champion (all gates passed)" in text
    assert "alerts firing: VidrecCTRDrop, VidrecFeatureDrift" in text
    assert "version 2 registered as challenger" in text
    assert "panels without data: Errors by type" in text
    assert "v2 promoted after 38 s, 19.8 % of users exposed, 0 failed requests" in text
    assert "v3 rolled back after 38 s (failed: ctr; 3 s from the first failing check)" in text
    assert lines[-2:] == ["demo passed in 720 s", "full summary: out/demo/summary.json"]


def test_a_failed_demo_names_what_did_not_hold() -> None:
    s = steps()
    s["monitoring"]["drift_detected"] = False
    lines = render(summary(s))
    assert "demo FAILED in 720 s:" in lines
    assert "  monitoring.drift: expected drift flagged in the new-market windows" in lines


@pytest.mark.parametrize("broken", [False, True])
def test_vidrec_demo_exits_1_when_a_check_fails(
    broken: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = steps()
    if broken:
        s["rollout"]["ok"] = False
    monkeypatch.setattr(demo, "run", lambda out, scale, seed: summary(s))
    runner = CliRunner()
    text = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert text.exit_code == (1 if broken else 0)
    assert ("demo FAILED" in text.output) is broken
    as_json = runner.invoke(app, ["demo", "--out", str(tmp_path), "--json"])
    assert as_json.exit_code == (1 if broken else 0)
    assert json.loads(as_json.output)["failed"] == (["rollout"] if broken else [])
