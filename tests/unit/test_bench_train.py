"""`vidrec bench train` at a tiny size: the report's shape and the properties it checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidrec.bench.train import bench_ann, bench_ranker_scoring, write_report
from vidrec.bench.train_table import table


@pytest.fixture(scope="module")
def ann() -> dict:
    return bench_ann(sizes=(20_000,), queries=100, k=50, nprobe_values=(1, 16))


def test_ann_recall_grows_with_nprobe_and_added_items_are_found(ann: dict) -> None:
    (result,) = ann["results"]
    assert result["items"] == 20_000
    assert result["train_seconds"] > 0 and result["add_items_per_s"] > 0
    assert result["exact"]["queries"] == 100
    assert result["exact"]["p99_ms"] >= result["exact"]["p50_ms"] > 0
    low, high = result["ivf"]
    assert [low["nprobe"], high["nprobe"]] == [1, 16]
    for point in (low, high):
        assert 0 < point["recall_at_k"] <= 1
        assert point["p99_ms"] >= point["p50_ms"] > 0
    assert high["recall_at_k"] >= low["recall_at_k"]
    assert ann["default_nprobe"] == result["default_nprobe"] in (1, 16)
    added = result["add_without_retrain"]
    assert added["items"] == 200
    assert added["found_rate"] == 1.0


def test_ranker_scorers_agree_and_report_is_written(ann: dict, tmp_path: Path) -> None:
    scoring = bench_ranker_scoring(candidates=100, repeats=10, rounds=5)
    assert scoring["model"]["trees"] == 5
    assert scoring["equal_to_1e-6"] is True
    assert scoring["max_abs_diff"] <= 1e-6
    assert scoring["compile_seconds"] > 0  # cold: compiled into a fresh cache
    for kind in ("lightgbm", "lleaves"):
        assert scoring[kind]["p99_ms"] >= scoring[kind]["p50_ms"] > 0

    report = write_report({"ann": ann, "ranker_scoring": scoring}, tmp_path / "bench")
    assert json.loads((tmp_path / "bench" / "train.json").read_text())["ann"] == ann
    assert Path(report["plot"]).stat().st_size > 0
    md = (tmp_path / "bench" / "train.md").read_text().splitlines()
    assert report["table"] == str(tmp_path / "bench" / "train.md")
    assert md == table(report) and md[-1].startswith("Ranker scoring")  # the README's tables
