"""The ranker's scorers: lleaves gives LightGBM's probabilities, compiles once, falls back."""

from __future__ import annotations

import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from vidrec.models.lightgbm_scorer import LightGBMScorer
from vidrec.models.lleaves_scorer import LleavesScorer, cache_path
from vidrec.models.scorer import load_scorer

FEATURES = 25


def _rows(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    x = rng.standard_normal((n, FEATURES)) * scale
    x[:, :8][rng.random((n, 8)) < 0.3] = np.nan  # features with missing values
    return x


@pytest.fixture(scope="module")
def model_txt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    x = _rows(rng, 4000)
    logit = np.nan_to_num(x[:, 0]) - x[:, 9] + np.isnan(x[:, 1]) + 0.5 * x[:, 10] * x[:, 11]
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(float)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 0, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=30)
    path = tmp_path_factory.mktemp("ranker") / "model.txt"
    booster.save_model(str(path))
    return path


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIDREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lleaves"


def test_lleaves_scores_equal_lightgbm_probabilities(model_txt: Path, cache_dir: Path) -> None:
    rng = np.random.default_rng(1)
    x = np.vstack(
        [
            _rows(rng, 300),
            _rows(rng, 150, scale=100.0),  # far outside the training range
            np.full((50, FEATURES), np.nan),  # nothing known
        ]
    )
    expected = lgb.Booster(model_file=str(model_txt)).predict(x)
    fast = LleavesScorer.load(model_txt)
    assert fast.kind == "lleaves"
    got = fast.score(x)
    assert np.all((got > 0) & (got < 1))  # probabilities, not raw margins
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(LightGBMScorer.load(model_txt).score(x), expected, atol=1e-12)


def test_compiled_code_is_cached_and_reused(model_txt: Path, cache_dir: Path) -> None:
    first = LleavesScorer.load(model_txt)
    assert first.compile_seconds is not None
    assert first.cache_file == cache_path(model_txt)
    assert first.cache_file.is_relative_to(cache_dir)
    mtime = first.cache_file.stat().st_mtime_ns
    second = LleavesScorer.load(model_txt)
    assert second.compile_seconds is None
    assert second.cache_file.stat().st_mtime_ns == mtime
    assert [p.name for p in first.cache_file.parent.iterdir()] == ["model.o"]  # no leftovers
    x = _rows(np.random.default_rng(2), 20)
    np.testing.assert_array_equal(first.score(x), second.score(x))


def test_factory_prefers_lleaves(model_txt: Path, cache_dir: Path) -> None:
    assert load_scorer(model_txt).kind == "lleaves"
    assert load_scorer(model_txt, fast=False).kind == "lightgbm"


def test_factory_falls_back_when_lleaves_cannot_load(
    model_txt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("VIDREC_CACHE", str(not_a_dir))  # nowhere to compile into
    with caplog.at_level(logging.WARNING):
        scorer = load_scorer(model_txt)
    assert scorer.kind == "lightgbm"
    assert "lleaves unavailable" in caplog.text


def test_factory_falls_back_when_lleaves_disagrees(
    model_txt: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = LleavesScorer.score
    monkeypatch.setattr(LleavesScorer, "score", lambda self, x: real(self, x) + 1e-3)
    assert load_scorer(model_txt).kind == "lightgbm"
