"""`vidrec evaluate`: every model on the same test slates, true and click-based NDCG."""

from __future__ import annotations

import json
from pathlib import Path

from vidrec.config import FeatureConfig
from vidrec.features.training_set import build_training_set
from vidrec.training.evaluate import evaluate_ranking


def test_report_compares_all_models_on_true_relevance(small_sim: Path, tmp_path: Path) -> None:
    ts = tmp_path / "t.parquet"
    build_training_set(small_sim, ts, FeatureConfig())
    r = evaluate_ranking(ts, small_sim / "oracle", tmp_path / "eval", 1, 1)
    m = r["models"]
    assert set(m) == {"random", "popularity", "logistic", "lightgbm_naive", "lightgbm_ipw"}
    assert m["popularity"]["ndcg10_true"] > m["random"]["ndcg10_true"] + 0.02
    assert m["logistic"]["ndcg10_true"] > m["popularity"]["ndcg10_true"]
    assert all("ndcg10_clicks" in v and "ndcg10_true_cold_users" in v for v in m.values())
    assert r["rows"]["cold_user_test"] > 0
    assert len(r["examination_estimate"]) == 10 and r["examination_estimate"][0] == 1.0
    assert json.loads((tmp_path / "eval" / "ranking.json").read_text())["models"] == m
    assert (tmp_path / "eval" / "ranking.png").stat().st_size > 10_000


def test_without_an_oracle_only_logged_metrics(small_sim: Path, tmp_path: Path) -> None:
    ts = tmp_path / "t.parquet"
    build_training_set(small_sim, ts, FeatureConfig())
    r = evaluate_ranking(ts, None, tmp_path / "eval", 1, 1)
    assert all(set(v) == {"ndcg10_clicks"} for v in r["models"].values())
