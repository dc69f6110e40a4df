"""Offline metrics: ranking quality against true relevance, retrieval recall, and the
off-policy CTR estimate an operator without an oracle would use.

Pure functions over arrays; ties in scores are broken by the item id so a
metric never depends on input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

Array = npt.NDArray[np.float64]


def ndcg_at_k(
    frame: pd.DataFrame,
    k: int,
    query: str = "query",
    score: str = "score",
    gain: str = "gain",
    item: str = "item",
) -> float:
    """Mean NDCG@k over queries; each query ranks its own candidates by `score`.

    The ideal ordering is by `gain` over the same candidates, so NDCG measures
    ordering only. Queries whose candidates all have zero gain are skipped.
    """
    f = frame[[query, score, gain, item]]
    ranked = f.sort_values([query, score, item], ascending=[True, False, True], kind="stable")
    ideal = f.sort_values([query, gain], ascending=[True, False], kind="stable")
    discount = 1.0 / np.log2(np.arange(2, k + 2))

    def dcg(sorted_frame: pd.DataFrame) -> pd.Series:
        rank = sorted_frame.groupby(query).cumcount().to_numpy()
        top = rank < k
        contrib = np.where(
            top, sorted_frame[gain].to_numpy() * discount[np.minimum(rank, k - 1)], 0.0
        )
        return (
            pd.Series(contrib, index=sorted_frame.index)
            .groupby(sorted_frame[query].to_numpy())
            .sum()
        )

    got, best = dcg(ranked), dcg(ideal)
    ok = best > 0
    return float((got[ok] / best[ok]).mean()) if ok.any() else float("nan")


def recall_at_k(retrieved: Sequence[Sequence[int]], relevant: Sequence[set[int]], k: int) -> float:
    """Mean over users with any relevant item of |top-k retrieved ∩ relevant| / |relevant|."""
    vals = [
        len(set(list(r)[:k]) & rel) / len(rel)
        for r, rel in zip(retrieved, relevant, strict=True)
        if rel
    ]
    return float(np.mean(vals)) if vals else float("nan")


def ips_ctr(
    clicks: Array, target_prob: Array, logging_prob: Array, clip: float = 100.0
) -> dict[str, float]:
    """Off-policy CTR of a target policy from logged impressions.

    IPS: mean(click * w), w = target/logging clipped at `clip` (bias for less
    variance); SNIPS: the self-normalised version, sum(click*w)/sum(w). Also the
    effective sample size, which says how much to trust either.
    """
    w = np.minimum(target_prob / logging_prob, clip)
    n_eff = float(w.sum() ** 2 / np.square(w).sum()) if w.any() else 0.0
    return {
        "ips": float(np.mean(clicks * w)),
        "snips": float((clicks * w).sum() / w.sum()) if w.any() else float("nan"),
        "effective_n": n_eff,
        "clipped_share": float(np.mean(target_prob / logging_prob > clip)),
    }
