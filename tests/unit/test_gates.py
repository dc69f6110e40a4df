"""Registration gates: each one passes, fails with its margin in the message, and
fails (never raises) when a measurement is missing."""

from __future__ import annotations

import json
import math

import pytest

from vidrec.config import GateConfig, parse
from vidrec.errors import ConfigError
from vidrec.registry.gates import GateFailed, GateReport, GateResult, check_gates

M = GateConfig().metric  # the default gate metric
BASELINES = {"popularity": {M: 0.705}, "logistic": {M: 0.690}}


def gates(
    candidate: float | None = 0.720,
    champion: float | None = None,
    cfg: GateConfig | None = None,
    baselines: dict[str, dict[str, float]] | None = None,
    nonfinite: int = 0,
    serving_hash: str = "h-abc",
) -> GateReport:
    return check_gates(
        cfg or GateConfig(),
        {} if candidate is None else {M: candidate, "auc": 0.8},
        BASELINES if baselines is None else baselines,
        None if champion is None else {M: champion},
        nonfinite,
        "h-abc",
        serving_hash,
    )


def result(report: GateReport, name: str) -> GateResult:
    (r,) = [r for r in report.results if r.name == name]
    return r


def test_all_gates_pass_in_order() -> None:
    report = gates(candidate=0.720, champion=0.710)
    assert [r.name for r in report.results] == [
        "finite_scores",
        "schema",
        "beats_popularity",
        "beats_logistic",
        "beats_champion",
    ]
    assert report.passed and report.failed() == []
    assert result(report, "beats_popularity").message == (
        f"{M} 0.720 is 0.015 above popularity 0.705 + margin 0.000"
    )
    assert result(report, "beats_champion").message == (
        f"{M} 0.720 is 0.010 above champion 0.710 + margin 0.000"
    )


def test_losing_to_a_baseline_fails_by_how_much() -> None:
    report = gates(candidate=0.701)
    assert not report.passed
    assert [r.name for r in report.failed()] == ["beats_popularity"]
    r = result(report, "beats_popularity")
    assert r.message == f"{M} 0.701 is 0.004 below popularity 0.705 + margin 0.000"
    assert r.value == 0.701 and r.threshold == pytest.approx(0.705)
    assert result(report, "beats_logistic").passed


def test_baseline_margin_is_required_on_top() -> None:
    cfg = GateConfig(min_gain_over_baselines=0.02)
    r = result(gates(candidate=0.720, cfg=cfg), "beats_popularity")
    assert not r.passed
    assert r.message == f"{M} 0.720 is 0.005 below popularity 0.705 + margin 0.020"
    assert r.threshold == pytest.approx(0.725)


def test_exact_tie_with_margin_passes_despite_float_rounding() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floats; equal to the threshold is a pass
    cfg = GateConfig(min_gain_over_baselines=0.2)
    r = result(
        gates(candidate=0.3, cfg=cfg, baselines={"popularity": {M: 0.1}}), "beats_popularity"
    )
    assert 0.3 < 0.1 + 0.2 and r.passed
    assert r.message == f"{M} 0.300 is 0.000 above popularity 0.100 + margin 0.200"


def test_tiny_loss_is_shown_not_rounded_to_zero() -> None:
    r = result(gates(candidate=0.7048), "beats_popularity")
    assert not r.passed
    assert "is 2.0e-04 below popularity" in r.message


def test_champion_none_passes_as_no_champion_yet() -> None:
    r = result(gates(champion=None), "beats_champion")
    assert r.passed and r.message == "no champion yet" and r.threshold is None


def test_worse_than_champion_fails() -> None:
    r = result(gates(candidate=0.720, champion=0.730), "beats_champion")
    assert not r.passed
    assert r.message == f"{M} 0.720 is 0.010 below champion 0.730 + margin 0.000"


def test_negative_champion_margin_is_a_tolerance() -> None:
    cfg = GateConfig(min_gain_over_champion=-0.003)
    ok = result(gates(candidate=0.728, champion=0.730, cfg=cfg), "beats_champion")
    assert ok.passed
    assert ok.message == f"{M} 0.728 is 0.001 above champion 0.730 - tolerance 0.003"
    bad = result(gates(candidate=0.726, champion=0.730, cfg=cfg), "beats_champion")
    assert not bad.passed
    assert bad.message == f"{M} 0.726 is 0.001 below champion 0.730 - tolerance 0.003"


def test_nonfinite_scores_fail() -> None:
    report = gates(nonfinite=3)
    r = result(report, "finite_scores")
    assert not r.passed and r.value == 3
    assert "3 validation score(s) are NaN or infinite" in r.message
    assert result(gates(), "finite_scores").passed


def test_schema_mismatch_names_both_hashes() -> None:
    r = result(gates(serving_hash="h-xyz"), "schema")
    assert not r.passed
    assert "h-abc" in r.message and "h-xyz" in r.message
    assert result(gates(), "schema").passed


def test_missing_candidate_metric_fails_every_comparison_by_name() -> None:
    report = gates(candidate=None, champion=0.7)
    failed = {r.name: r.message for r in report.failed()}
    assert set(failed) == {"beats_popularity", "beats_logistic", "beats_champion"}
    assert all(f"lack '{M}'" in m for m in failed.values())


def test_missing_baseline_or_baseline_metric_fails_not_raises() -> None:
    report = gates(baselines={"popularity": {"auc": 0.7}})
    assert result(report, "beats_popularity").message == f"popularity metrics lack '{M}'"
    assert result(report, "beats_logistic").message == "no metrics for logistic"
    assert not report.passed


def test_nan_metric_fails_and_report_stays_strict_json() -> None:
    report = gates(candidate=math.nan, champion=0.7)
    assert {r.name for r in report.failed()} >= {"beats_popularity", "beats_champion"}
    assert "not finite" in result(report, "beats_popularity").message
    json.dumps(report.to_dict(), allow_nan=False)  # raises on NaN


def test_report_to_dict_is_json() -> None:
    d = json.loads(json.dumps(gates(candidate=0.701).to_dict(), allow_nan=False))
    assert d["passed"] is False
    assert [g["name"] for g in d["gates"] if not g["passed"]] == ["beats_popularity"]


def test_gate_failed_names_failed_gates_and_carries_report() -> None:
    report = gates(candidate=0.701, serving_hash="h-xyz")
    err = GateFailed(report)
    assert err.http_status == 422
    assert "2 gate(s) failed" in err.message
    assert "schema:" in err.message and "beats_popularity: " in err.message
    assert "0.004 below popularity" in err.message
    assert err.to_dict()["details"]["report"] == report.to_dict()


def test_gate_config_rejects_unknown_keys_and_negative_baseline_margin() -> None:
    with pytest.raises(ConfigError, match="min_gain"):
        parse(GateConfig, {"min_gain": 0.1}, "gates")
    with pytest.raises(ConfigError, match="min_gain_over_baselines"):
        parse(GateConfig, {"min_gain_over_baselines": -0.1}, "gates")
