"""Offline evaluation of rankers on the test window: `vidrec evaluate`.

Every model is trained on the same training window and re-ranks the same
logged test slates. Two views of quality side by side:
- `ndcg10_true`: against TRUE relevance from the simulator's oracle, which no
  real operator has;
- `ndcg10_clicks`: against logged clicks, which they do have. Clicks carry the
  logging policy's position bias (top slots get clicked because they are
  looked at), so this view flatters models that imitate the old ranking and
  can disagree with the true one - the same way offline and online metrics
  disagree in production.
Slates hold `slate_size` videos, so NDCG@10 covers whole slates here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.data.oracle import Oracle
from vidrec.features.definitions import FEATURES
from vidrec.training.baselines import LogisticRanker, Popularity
from vidrec.training.metrics import ndcg_at_k
from vidrec.training.ranker import LightGBMRanker
from vidrec.training.splits import time_splits

COLUMNS = [
    "request_id",
    "ts",
    "user_id",
    "video_id",
    "position",
    "label_click",
    "user_country",
    "user_age_bucket",
    *FEATURES.model_inputs,
]
COLD_USER_DAYS = 7.0
Array = npt.NDArray[Any]


def _models(seed: int) -> dict[str, Any]:
    return {
        "popularity": Popularity(),
        "logistic": LogisticRanker(seed=seed),
        "lightgbm_naive": LightGBMRanker(debias="none"),
        "lightgbm_ipw": LightGBMRanker(debias="ipw"),
    }


def evaluate_ranking(
    training_set: Path,
    oracle_dir: Path | None,
    out: Path,
    validation_days: float = 3,
    test_days: float = 3,
    gap_s: int = 6 * 3600,
    label_horizon_s: int = 6 * 3600,
    seed: int = 0,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows = pd.read_parquet(training_set, columns=list(dict.fromkeys(COLUMNS)))
    splits = time_splits(
        int(rows.ts.min()), int(rows.ts.max()), validation_days, test_days, gap_s, label_horizon_s
    )
    label = splits.assign(rows.ts.to_numpy())
    train, test = rows[label == "train"], rows[label == "test"]
    gain = None
    if oracle_dir is not None:
        gain = Oracle.load(oracle_dir).relevance(
            test.user_id.to_numpy(), test.video_id.to_numpy(), test.ts.to_numpy()
        )
    cold = (test.user_tenure_days < COLD_USER_DAYS).to_numpy()
    scores = {"random": np.random.default_rng(seed).random(len(test))}
    extra: dict[str, Any] = {}
    for name, model in _models(seed).items():
        scores[name] = model.fit(train).score(test)
        if isinstance(model, LightGBMRanker) and model.examination is not None:
            extra["examination_estimate"] = [round(float(x), 4) for x in model.examination]
    report = {name: _metrics(test, s, gain, cold) for name, s in scores.items()}
    summary = {
        "rows": {"train": len(train), "test": len(test), "cold_user_test": int(cold.sum())},
        "windows": {
            n: [w.start, w.end] for n, w in (("train", splits.train), ("test", splits.test))
        },
        "models": report,
        **extra,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking.json").write_text(json.dumps(summary, indent=2))
    _plot(report, out / "ranking.png")
    return {**summary, "report": str(out / "ranking.json"), "plot": str(out / "ranking.png")}


def _metrics(test: pd.DataFrame, score: Array, gain: Array | None, cold: Array) -> dict[str, float]:
    base = pd.DataFrame(
        {"query": test.request_id.to_numpy(), "item": test.video_id.to_numpy(), "score": score}
    )
    m = {"ndcg10_clicks": round(ndcg_at_k(base.assign(gain=test.label_click.to_numpy()), 10), 4)}
    if gain is not None:
        f = base.assign(gain=gain)
        m["ndcg10_true"] = round(ndcg_at_k(f, 10), 4)
        m["ndcg10_true_cold_users"] = round(ndcg_at_k(f[cold], 10), 4)
    return m


def _plot(report: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report)
    keys = [k for k in ("ndcg10_true", "ndcg10_clicks") if k in report[names[0]]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, k in enumerate(keys):
        vals = [report[n][k] for n in names]
        bars = ax.bar(x + (i - (len(keys) - 1) / 2) * 0.38, vals, 0.38, label=k)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in vals], fontsize=7)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(min(min(r.values()) for r in report.values()) - 0.05, 1.0)
    ax.set_ylabel("NDCG@10 on the test window")
    ax.set_title("Rankers: true relevance vs logged clicks")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
