"""`vidrec bench features|train|drift` reports as the README's tables (`*.md` beside the
JSON) and a terminal's lines."""

from __future__ import annotations

from typing import Any

from helpers import cells
from vidrec.bench import drift_table, features_table, train_table


def feature_result(scale: str, naive_rows: int = 5000, **kw: Any) -> dict[str, Any]:
    return {"scale": scale, "input_impressions": 4_134_080, "rows": 4_069_130,
            "pit_rows_per_s": 163_495, "pit_seconds": 24.9, "pit_peak_rss_mb": 3276.8,
            "naive_rows": naive_rows, "naive_rows_per_s": 134, "speedup_vs_naive": 1220.6,
            "naive_vs_engine_max_abs_diff": 0.0125} | kw  # fmt: skip


def test_features_a_row_per_scale_with_one_sample_size_in_the_header() -> None:
    large = feature_result("large", pit_seconds=668.0, naive_vs_engine_max_abs_diff=0.02)
    report = {"results": [feature_result("demo"), large], "table": "t.md", "plot": "p.png"}
    lines = features_table.table(report)
    assert "(5,000-row sample)" in lines[0]
    assert cells(lines[2]) == ["demo", "4,134,080", "4,069,130", "163,495 (25 s)", "3.2 GB",
                               "134", "1,221x"]  # fmt: skip
    assert cells(lines[3])[3] == "163,495 (11 min)"
    shown = features_table.lines(report)
    assert shown[: len(lines)] == lines
    assert any("agree to 0.02 " in line for line in shown)  # the worst scale's difference
    assert shown[-1] == "table t.md, plot p.png"


def test_features_sample_sizes_that_differ_go_beside_each_rate() -> None:
    lines = features_table.table({"results": [feature_result("demo", 5000),
                                              feature_result("large", 2000)]})  # fmt: skip
    assert "sample" not in lines[0]
    assert cells(lines[3])[5] == "134 (2,000 rows)"


def ann_result(items: int, recall: float = 0.965) -> dict[str, Any]:
    ivf = [{"nprobe": n, "effective_nprobe": 16 * n, "p50_ms": 0.6 + n / 100, "p99_ms": 0.9,
            "recall_at_k": recall - 0.01 * (n == 4)} for n in (4, 8)]  # fmt: skip
    return {"items": items, "nlist": 4000, "train_seconds": 10.47, "add_seconds": 4.2,
            "ivf": ivf, "default_nprobe": 8, "exact": {"p50_ms": 12.0, "p99_ms": 13.21},
            "add_without_retrain": {"items": 10_000, "found_rate": 0.9991}}  # fmt: skip


def scoring() -> dict[str, Any]:
    return {"model": {"trees": 200, "features": 25}, "candidates": 500,
            "lightgbm": {"p50_ms": 2.72, "p99_ms": 4.26},
            "lleaves": {"p50_ms": 0.37, "p99_ms": 0.64},
            "speedup_p50": 7.36, "compile_seconds": 19.2, "cached_load_seconds": 0.02,
            "max_abs_diff": 5.6e-16, "equal_to_1e-6": True}  # fmt: skip


def test_train_ann_rows_read_the_default_nprobe_and_blocks_follow_the_report() -> None:
    report = {
        "pipeline": {"scale": "demo", "step_seconds": {"build_dataset": 24.64, "mystery": None},
                     "total_seconds": 200.0},
        "ann": {"config": {"k": 500}, "results": [ann_result(1_000_000)]},
        "ranker_scoring": scoring(),
        "table": "t.md", "plot": "p.png",
    }  # fmt: skip
    lines = train_table.table(report)
    assert lines[:5] == ["| pipeline step (demo scale) | seconds |", "| --- | ---: |",
                         "| build_dataset (PIT training set) | 24.6 |", "| mystery |  |",
                         "| total | 200.0 |"]  # fmt: skip
    assert lines[5] == "" and "recall@500 vs exact" in lines[6]
    assert cells(lines[8]) == ["1,000,000", "10.5 s + 4.2 s", "128 of 4,000", "0.68 / 0.90 ms",
                               "0.965", "12.00 / 13.21 ms", "9,991 of 10,000"]  # fmt: skip
    assert lines[9] == "" and "**7.4x faster at p50**" in lines[10]
    assert "5.6e-16" in lines[10] and "NOT" not in lines[10]
    assert train_table.lines(report)[-1] == "table t.md, plot p.png"


def test_train_a_part_that_did_not_run_has_no_block_and_a_mismatch_is_said() -> None:
    report = {"ranker_scoring": scoring() | {"equal_to_1e-6": False, "max_abs_diff": 0.003}}
    lines = train_table.table(report)
    assert len(lines) == 1 and lines[0].startswith("Ranker scoring")
    assert "3.0e-03 (NOT within 1e-6)" in lines[0]


def signal(delays: list[int | None], share: float | None = None, **kw: Any) -> dict[str, Any]:
    return {"detection_delays": delays, "detected_share_after_onset": share,
            "features_flagged_after_onset": kw.pop("flagged", {})} | kw  # fmt: skip


def drift_report() -> dict[str, Any]:
    quiet = {"quiet_windows": 396, "false_alarm_windows": 1, "false_alarm_rate": 0.0025,
             "rate_upper_95": 0.012}  # fmt: skip
    return {
        "targets": {"false_alarm_rate_max": 0.01, "detection_delay_windows_max": 2},
        "false_alarms_pooled": {"drift": quiet, "samples_mode": quiet | {
            "false_alarm_windows": 8, "false_alarm_rate": 0.0202, "rate_upper_95": 0.036},
            "ctr_drop": quiet | {"quiet_windows": 0}},
        "scenarios": {
            "none": signal([]) | {"samples_mode": signal([]), "ctr_drop": signal([])},
            "new-market": signal([0, 1, 0], 0.963, flagged={"country_code": 50, "x": 3})
            | {"samples_mode": signal([0, 3, 0], 0.9), "ctr_drop": signal([None, 2, 25], 0.1)},
            "catalog-surge": signal([None, None], 0.0)
            | {"samples_mode": signal([None, 4], 0.01, flagged={"video_age_days": 2, "y": 1}),
               "ctr_drop": signal([None, None], 0.0)},
        },
        "seconds": 2640.4, "report": "r.json", "table": "t.md", "plot": "p.png",
    }  # fmt: skip


def test_drift_pooled_quiet_windows_then_a_row_per_scenario_with_a_change() -> None:
    lines = drift_table.table(drift_report())
    assert len(lines) == 2 + 3  # `none` only counts in the pooled row
    assert cells(lines[2]) == ["all quiet windows", "false alarms <= 1 % of windows",
                               "**0.25 %** (1 of 396; upper 95 %: 1.2 %)",
                               "2 % (8 of 396; upper 95 %: 3.6 %)", "no quiet window"]  # fmt: skip
    assert cells(lines[3]) == ["new-market", "detection delay <= 2 windows",
                               "**0, 1, 0**; 96 % of later windows flag (country_code)",
                               "0, 3, 0; 90 % of later windows flag",
                               "not seen, 2, 25"]  # fmt: skip
    # not meant to be caught: what flagged, if anything
    assert cells(lines[4]) == ["catalog-surge", "which features flag", "none",
                               "video_age_days (2), y (1)", "none"]  # fmt: skip
    assert drift_table.lines(drift_report())[-1] == (
        "2640 s; report r.json, table t.md, plot p.png"
    )
