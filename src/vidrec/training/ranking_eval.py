"""Ranking metrics of one model's scores: on logged slates and on retrieval candidates.

Logged slates (what was shown): NDCG@10 against true relevance (oracle), and the
two views an operator without an oracle has - NDCG@10 on raw clicks, and on
clicks re-weighted by 1/theta(position) (the position-bias-corrected gain),
plus the IPS estimate of the top-slot CTR if the model had re-ordered the
slate (click of its top pick / theta of where it was shown).

Retrieval candidates (what serving ranks): the top `CANDIDATES` of the
two-tower index per request, most of them never shown, with point-in-time
features from the same pipeline; NDCG@10/@20 against true relevance only,
since unshown videos have no clicks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.training.metrics import ndcg_at_k

Array = npt.NDArray[Any]
CANDIDATES = 50
FRESH_CANDIDATES = 20
CLIP = 10.0  # max inverse-examination weight, as in the IPW ranker


def _frame(rows: pd.DataFrame, score: Array, gain: Array) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query": rows.request_id.to_numpy(),
            "item": rows.video_id.to_numpy(),
            "score": score,
            "gain": gain,
        }
    )


def inverse_examination(theta: Array, position: Array) -> Array:
    return np.minimum(1.0 / theta[np.asarray(position, dtype=np.int64)], CLIP)


def ips_top1_ctr(rows: pd.DataFrame, score: Array, theta: Array) -> float:
    """CTR at the top slot if each logged slate had been re-ordered by `score`."""
    f = _frame(rows, score, rows.label_click.to_numpy(np.float64))
    f["w"] = inverse_examination(theta, rows.position.to_numpy())
    top = f.sort_values(["query", "score", "item"], ascending=[True, False, True]).drop_duplicates(
        "query"
    )
    return float((top.gain * top.w).mean())


def slate_metrics(
    rows: pd.DataFrame, score: Array, theta: Array, gain: Array | None, cold: Array
) -> dict[str, float]:
    click = rows.label_click.to_numpy(np.float64)
    debiased = click * inverse_examination(theta, rows.position.to_numpy())
    m = {
        "ndcg10_clicks": ndcg_at_k(_frame(rows, score, click), 10),
        "ndcg10_clicks_debiased": ndcg_at_k(_frame(rows, score, debiased), 10),
        "ips_ctr_top1": ips_top1_ctr(rows, score, theta),
    }
    if gain is not None:
        f = _frame(rows, score, gain)
        m["ndcg10_true"] = ndcg_at_k(f, 10)
        m["ndcg10_true_cold_users"] = ndcg_at_k(f[cold], 10)
    return {k: round(v, 4) for k, v in m.items()}


def candidate_metrics(
    rows: pd.DataFrame, score: Array, gain: Array, cold: Array, fresh: Array
) -> dict[str, float]:
    """`fresh` marks the rows of each request's separate fresh-video candidate set (the
    exploration pool): NDCG there says whether the ranker tells good new videos apart."""
    f = _frame(rows, score, gain)
    main = f[~fresh]
    m = {
        "ndcg10_true": ndcg_at_k(main, 10),
        "ndcg20_true": ndcg_at_k(main, 20),
        "ndcg20_true_cold_users": ndcg_at_k(main[cold[~fresh]], 20),
        "ndcg10_true_fresh_items": ndcg_at_k(f[fresh], 10),
    }
    return {k: round(v, 4) for k, v in m.items()}
