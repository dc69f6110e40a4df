"""Examination estimated from logs alone, and the ranker's inverse-propensity weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers import impressions_with_clicks
from vidrec.data.oracle import Oracle
from vidrec.training.position_bias import estimate_examination
from vidrec.training.ranker import LightGBMRanker


def test_recovers_a_known_position_based_model() -> None:
    rng = np.random.default_rng(0)
    n, items = 300_000, 200
    theta = 1.0 / (1.0 + np.arange(8)) ** 0.7
    appeal = rng.uniform(0.02, 0.3, items)
    item = rng.integers(0, items, n)
    # popular items tend to be shown higher, as with a popularity-ranked slate
    position = np.clip((rng.integers(0, 8, n) - (appeal[item] > 0.2) * 3), 0, 7)
    click = (rng.random(n) < theta[position] * appeal[item]).astype(float)
    est = estimate_examination(position, item, click)
    np.testing.assert_allclose(est, theta, rtol=0.08)
    # the naive curve (CTR by position) is confounded by who is shown where
    naive = np.bincount(position, click) / np.bincount(position)
    assert abs(naive[1] / naive[0] - theta[1]) > 0.1


def test_estimates_the_simulators_curve_from_its_logs(small_sim: Path) -> None:
    imp = impressions_with_clicks(small_sim)
    est = estimate_examination(
        imp.position.to_numpy(), imp.video_id.to_numpy(), imp.click.to_numpy()
    )
    decay = Oracle.load(small_sim / "oracle").examination_decay
    truth = (1.0 + np.arange(est.size)) ** -decay
    np.testing.assert_allclose(est[:6], truth[:6], rtol=0.15)


def test_ipw_weights_only_clicks_clipped() -> None:
    rows = pd.DataFrame(
        {
            "position": [0, 1, 2, 2, 9, 9] * 50,
            "video_id": [1, 1, 2, 1, 2, 1] * 50,
            "label_click": [1, 1, 0, 1, 1, 0] * 50,
        }
    )
    r = LightGBMRanker(debias="ipw", clip=3.0)
    w = r.weights(rows)
    assert w is not None and r.examination is not None
    clicks = rows.label_click.to_numpy() > 0
    assert (w[~clicks] == 1.0).all()
    assert (w[clicks] >= 1.0).all() and (w[clicks] <= 3.0).all()
    assert LightGBMRanker(debias="none").weights(rows) is None
