"""Baselines learn from the PIT training set and beat chance on TRUE relevance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vidrec.config import FeatureConfig
from vidrec.data.oracle import Oracle
from vidrec.features.definitions import FEATURES
from vidrec.features.training_set import build_training_set
from vidrec.training.baselines import GLOBAL, LogisticRanker, Popularity
from vidrec.training.metrics import ndcg_at_k
from vidrec.training.splits import time_splits


@pytest.fixture(scope="module")
def split_rows(
    small_sim: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = tmp_path_factory.mktemp("ts") / "t.parquet"
    build_training_set(small_sim, out, FeatureConfig())
    rows = pd.read_parquet(out)
    s = time_splits(int(rows.ts.min()), int(rows.ts.max()), 1, 1, 6 * 3600, 6 * 3600)
    label = s.assign(rows.ts.to_numpy())
    return rows[label == "train"], rows[label == "test"].copy()


def _ndcg(test: pd.DataFrame, score: np.ndarray, oracle: Oracle) -> float:
    gain = oracle.relevance(test.user_id.to_numpy(), test.video_id.to_numpy(), test.ts.to_numpy())
    return ndcg_at_k(
        pd.DataFrame(
            {
                "query": test.request_id.to_numpy(),
                "item": test.video_id.to_numpy(),
                "score": score,
                "gain": gain,
            }
        ),
        10,
    )


def test_baselines_beat_random_on_true_relevance(
    split_rows: tuple[pd.DataFrame, pd.DataFrame], small_sim: Path
) -> None:
    train, test = split_rows
    oracle = Oracle.load(small_sim / "oracle")
    chance = _ndcg(test, np.random.default_rng(0).random(len(test)), oracle)
    pop = _ndcg(test, Popularity().fit(train).score(test), oracle)
    logreg = _ndcg(test, LogisticRanker().fit(train).score(test), oracle)
    assert pop > chance + 0.02
    assert logreg > pop


def test_popularity_is_segment_aware_with_global_backfill(
    split_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, _ = split_rows
    pop = Popularity(min_segment_clicks=1).fit(train)
    seg = next(s for s in pop.ranked if s != GLOBAL)
    top = pop.recommend(seg, 5)
    assert top == pop.ranked[seg][:5]
    # a segment nobody is in (a cold user from a new market) gets the global list
    assert pop.recommend(("XX", "13-17"), 5) == pop.ranked[GLOBAL][:5]
    # exclusions (already watched) are skipped and backfilled, never repeated
    got = pop.recommend(seg, 50, exclude=top[:2])
    assert not set(top[:2]) & set(got) and len(got) == len(set(got)) == 50


def test_logistic_ranker_reads_only_the_declared_inputs(
    split_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = split_rows
    model = LogisticRanker().fit(train)
    shuffled = test.drop(columns=["label_click", "label_watch_seconds"]).sample(
        frac=1.0, axis=1, random_state=0
    )
    np.testing.assert_array_equal(model.score(shuffled), model.score(test))
    assert model.model is not None
    assert model.model[-1].coef_.shape == (1, len(FEATURES.model_inputs))
