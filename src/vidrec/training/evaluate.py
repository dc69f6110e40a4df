"""Offline evaluation of one pipeline run: validation metrics for the gates, a test report.

Every model was trained on the same training window. On the validation window
each ranker re-orders the logged slates and is scored with what an operator
has (clicks, debiased clicks, IPS top-slot CTR): the gates read these. On the
test window the report adds what only a simulator has - TRUE relevance from
the oracle - for logged slates, for retrieval (Recall@100/@500 of two-tower +
ANN, exact search, popularity) and for ranking retrieval candidates
(NDCG@10/@20), with cold-user and fresh-item slices. Where both views exist
the report prints both: offline click metrics can disagree with true (and
online) quality, because logged clicks carry the old policy's position and
exposure bias.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.config import DAY, Settings
from vidrec.data.oracle import Oracle
from vidrec.features.definitions import FEATURES, as_float_matrix
from vidrec.features.training_set import features_for
from vidrec.models.exact import ExactIndex
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.two_tower import Towers
from vidrec.training.baselines import LogisticRanker
from vidrec.training.data import COLUMNS, read_videos, read_window
from vidrec.training.position_bias import estimate_examination
from vidrec.training.ranking_eval import FRESH_CANDIDATES, candidate_metrics, slate_metrics
from vidrec.training.retrieval_eval import (
    Requests,
    candidate_rows,
    evaluate_retrieval,
    fresh_lists,
    retrieve,
)
from vidrec.training.serving_reference import (
    OfflineServing,
    logged_requests,
    serving_reference,
)

COLD_USER_DAYS = 7.0
FRESH_S = 3 * DAY  # "fresh" videos: uploaded in the last three days
Array = npt.NDArray[Any]

NOTE = (
    "Offline and online metrics can disagree. ndcg*_true uses the simulator's oracle "
    "(no real operator has it). ndcg10_clicks "
    "rewards imitating the logging policy: its clicks are position-biased, so a "
    "debiased ranker can look worse on it while being better on true relevance "
    "and, online, on engagement. ips_ctr_top1 and ndcg10_clicks_debiased correct "
    "for position (1/examination) but not for videos never shown; only an online "
    "canary measures that."
)


class BoosterRanker:
    def __init__(self, path: Path) -> None:
        self.booster = lgb.Booster(model_file=str(path))

    def score(self, rows: pd.DataFrame) -> Array:
        return np.asarray(self.booster.predict(as_float_matrix(rows, FEATURES)))


def load_rankers(models: Path) -> dict[str, Any]:
    saved = pickle.loads((models / "baselines.pkl").read_bytes())
    out: dict[str, Any] = {
        "popularity": saved["popularity"],
        "logistic": LogisticRanker(model=saved["logistic"]),
    }
    for name in ("lightgbm_naive", "lightgbm_ipw"):
        out[name] = BoosterRanker(models / f"{name}.txt")
    return out


def _theta(rows: pd.DataFrame) -> Array:
    return estimate_examination(
        rows.position.to_numpy(np.int64),
        rows.video_id.to_numpy(np.int64),
        rows.label_click.to_numpy(np.float64),
    )


def _cold(rows: pd.DataFrame) -> Array:
    return (rows.user_tenure_days < COLD_USER_DAYS).to_numpy()


def validation_metrics(
    val: pd.DataFrame, rankers: dict[str, Any]
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    theta = _theta(val)
    out, nonfinite = {}, {}
    for name, model in rankers.items():
        score = model.score(val)
        nonfinite[name] = int((~np.isfinite(score)).sum())
        out[name] = slate_metrics(val, score, theta, None, _cold(val))
    return out, nonfinite


def evaluate_run(
    settings: Settings,
    data: Path,
    training_set: Path,
    windows: dict[str, list[int]],
    retrieval: Path,
    index: Path,
    models: Path,
    chosen: str,
    oracle_dir: Path | None,
    out: Path,
    champion_ranker: Path | None = None,
    build_ts: int | None = None,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    cfg = settings.train
    rankers = load_rankers(models)
    val = read_window(training_set, windows["validation"], COLUMNS)
    validation, nonfinite = validation_metrics(val, rankers)
    champion = None
    if champion_ranker is not None:
        champion = validation_metrics(val, {"champion": BoosterRanker(champion_ranker)})[0]
    del val
    test = read_window(training_set, windows["test"], COLUMNS)
    oracle = Oracle.load(oracle_dir) if oracle_dir else None
    rankers_test = {"random": _Random(cfg.seed), **rankers}
    slates = _slates(test, rankers_test, oracle)
    towers = Towers.load(retrieval)
    ann = IvfIndex.load(index)
    exact = ExactIndex(ann.index.d)
    exact.add(np.load(index / "item_ids.npy"), np.load(index / "item_embeddings.npy"))
    req = Requests.sample(test, cfg.eval_requests, cfg.seed)
    videos = read_videos(data, settings.features)
    videos = videos[videos.upload_ts <= windows["test"][1]]
    indexes: dict[str, Any] = {"two_tower_ann": ann, "two_tower_exact": exact}
    retrieval_report = evaluate_retrieval(
        towers, indexes, rankers["popularity"], req, videos, oracle, FRESH_S
    )
    as_of = build_ts or windows["test"][1]
    # the earliest snapshot is under reference_days before as_of, its users before that
    start = as_of - cfg.reference_days * DAY - cfg.reference_lookback_s
    log = logged_requests(data, start, as_of, settings.features)
    path = OfflineServing(settings, data, towers, ann, videos, rankers[chosen])
    reference = serving_reference(path, log, models / "reference.json", as_of)
    candidates: dict[str, Any] = {}
    if oracle is not None:
        candidates = _candidates(settings, data, towers, ann, req, videos, rankers_test, oracle)
    report = {
        "windows": windows,
        "chosen": chosen,
        "validation": validation,
        "champion_validation": champion,
        "nonfinite_scores": nonfinite,
        "test": {"slates": slates, "retrieval": retrieval_report, "candidates": candidates},
        "rows": {"test": len(test), "requests_sampled": len(req.frame)},
        "note": NOTE,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "serving_reference.json").write_text(json.dumps(reference))
    _plot(report, out / "evaluation.png")
    return {
        "validation": validation,
        "champion_validation": champion["champion"] if champion else None,
        "nonfinite_scores": nonfinite[chosen],
        "test": report["test"],
        "report": str(out / "evaluation.json"),
        "serving_reference": str(out / "serving_reference.json"),
        "plot": str(out / "evaluation.png"),
        "seconds": report["seconds"],
    }


class _Random:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def score(self, rows: pd.DataFrame) -> Array:
        return np.random.default_rng(self.seed).random(len(rows))


def _slates(
    test: pd.DataFrame, rankers: dict[str, Any], oracle: Oracle | None
) -> dict[str, dict[str, float]]:
    theta = _theta(test)
    gain = None
    if oracle is not None:
        gain = oracle.relevance(
            test.user_id.to_numpy(), test.video_id.to_numpy(), test.ts.to_numpy()
        )
    return {
        name: slate_metrics(test, m.score(test), theta, gain, _cold(test))
        for name, m in rankers.items()
    }


def _candidates(
    settings: Settings,
    data: Path,
    towers: Towers,
    index: IvfIndex,
    req: Requests,
    videos: pd.DataFrame,
    rankers: dict[str, Any],
    oracle: Oracle,
) -> dict[str, Any]:
    """Rank the top retrieval candidates of each sampled request (mostly never shown), and
    separately its top fresh videos from a small exact index of recent uploads."""
    cfg, f = settings.train, req.frame
    ts = f.ts.to_numpy(np.int64)
    upload = videos.set_index("video_id").upload_ts
    users = towers.embed_users(f)
    main = candidate_rows(f, retrieve(index, users, ts, upload, cfg.candidates))
    fresh_ids = fresh_lists(towers, videos, users, ts, FRESH_S, FRESH_CANDIDATES)
    fresh = candidate_rows(f, fresh_ids).assign(request_id=lambda d: -d.request_id - 1)
    feats = features_for(data, settings.features, pd.concat([main, fresh], ignore_index=True))
    gain = oracle.relevance(
        feats.user_id.to_numpy(), feats.video_id.to_numpy(), feats.ts.to_numpy()
    )
    cold, is_fresh = _cold(feats), (feats.request_id < 0).to_numpy()
    metrics = {
        name: candidate_metrics(feats, m.score(feats), gain, cold, is_fresh)
        for name, m in rankers.items()
    }
    return {
        "per_request": cfg.candidates,
        "fresh_per_request": FRESH_CANDIDATES,
        "rows": len(feats),
        "models": metrics,
    }


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = report["test"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    panels: list[tuple[Any, dict[str, dict[str, float]], list[str], str]] = [
        (axes[0], test["candidates"].get("models") or test["slates"], [], "ranking"),
        (axes[1], test["retrieval"], [], "retrieval"),
    ]
    for ax, table, _, title in panels:
        names = list(table)
        keys = _plot_keys(table, title)
        x = np.arange(len(names))
        width = 0.8 / max(len(keys), 1)
        for i, k in enumerate(keys):
            vals = [table[n].get(k, np.nan) for n in names]
            bars = ax.bar(x + (i - (len(keys) - 1) / 2) * width, vals, width, label=k)
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=6)
        ax.set_xticks(x, names, fontsize=7, rotation=15)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title(
            "Ranking retrieval candidates (true relevance)"
            if title == "ranking"
            else "Retrieval recall on the test window"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_keys(table: dict[str, dict[str, float]], kind: str) -> list[str]:
    first = next(iter(table.values()))
    wanted = (
        ("ndcg10_true", "ndcg20_true", "ndcg20_true_cold_users", "ndcg10_clicks")
        if kind == "ranking"
        else ("recall500_true", "recall500_clicks", "recall500_fresh", "recall100_true")
    )
    return [k for k in wanted if k in first]
