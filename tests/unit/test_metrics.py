import numpy as np
import pandas as pd
import pytest

from vidrec.training.metrics import ips_ctr, ndcg_at_k, recall_at_k


def _frame(scores: list[float], gains: list[float], query: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"query": query, "item": range(len(scores)), "score": scores, "gain": gains}
    )


def test_ndcg_perfect_reversed_and_hand_computed() -> None:
    gains = [3.0, 2.0, 0.0, 1.0]
    assert ndcg_at_k(_frame([4, 3, 1, 2], gains), 4) == pytest.approx(1.0)
    assert ndcg_at_k(_frame([1, 2, 4, 3], gains), 4) < 0.7
    # ranking [item1, item0, item3, item2]: DCG = 2/log2(2) + 3/log2(3) + 1/log2(4)
    dcg = 2 + 3 / np.log2(3) + 1 / np.log2(4)
    idcg = 3 + 2 / np.log2(3) + 1 / np.log2(4)
    assert ndcg_at_k(_frame([3, 4, 1, 2], gains), 4) == pytest.approx(dcg / idcg)
    # k cuts the list; all-zero queries are skipped, not counted as 0 or 1
    both = pd.concat([_frame([3, 4, 1, 2], gains), _frame([1, 2], [0, 0], query=1)])
    assert ndcg_at_k(both, 1) == pytest.approx(2 / 3)


def test_ndcg_ties_do_not_depend_on_input_order() -> None:
    f = _frame([1, 1, 1], [0.0, 1.0, 2.0])
    assert ndcg_at_k(f, 2) == ndcg_at_k(f.iloc[::-1], 2)


def test_recall() -> None:
    assert recall_at_k([[1, 2, 3], [4, 5]], [{1, 9}, set()], 2) == 0.5
    assert recall_at_k([[1, 2, 3]], [{3}], 2) == 0.0


def test_ips_recovers_a_target_policys_ctr() -> None:
    rng = np.random.default_rng(0)
    n, items = 200_000, 5
    true_ctr = np.array([0.02, 0.05, 0.1, 0.2, 0.01])
    logging = np.full(items, 1 / items)
    shown = rng.integers(0, items, n)
    clicks = (rng.random(n) < true_ctr[shown]).astype(float)
    target = np.array([0.0, 0.0, 0.2, 0.8, 0.0])  # prefers the best items
    est = ips_ctr(clicks, target[shown], logging[shown])
    truth = float(target @ true_ctr)
    assert est["ips"] == pytest.approx(truth, rel=0.05)
    assert est["snips"] == pytest.approx(truth, rel=0.05)
    assert abs(float(clicks.mean()) - truth) > 0.05  # the naive logged CTR is far off
