"""The steps of the training pipeline, each a function of named inputs to named outputs.

`pipelines/training.yaml` wires them (build dataset -> train retrieval ->
build index -> train ranker -> evaluate -> gate -> register) and
`vidrec.pipeline` runs them, locally or as Ray tasks. A step reads only its
inputs (paths and small JSON values) and writes only under its own directory
of the run, so any step can run on another machine that shares the run's
filesystem, and a run records exactly what each step saw and produced.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidrec.config import DAY, Settings, TrainConfig
from vidrec.errors import InvalidInput, NotFound
from vidrec.features.bins import category_edges, range_edges
from vidrec.features.definitions import CATEGORICAL_INPUTS, FEATURES, as_float_matrix
from vidrec.features.training_set import build_training_set
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.two_tower import Towers, videos_as_features
from vidrec.registry.bundle import Manifest, bundle_files, git_sha, snapshot_id, write_manifest
from vidrec.registry.gates import GateReport, GateResult, check_gates
from vidrec.registry.registry import open_registry
from vidrec.training.baselines import LogisticRanker, Popularity
from vidrec.training.data import COLUMNS, read_videos, read_window
from vidrec.training.evaluate import evaluate_run
from vidrec.training.ranker import LightGBMRanker
from vidrec.training.retrieval import RetrievalConfig, fit_towers
from vidrec.training.splits import SPLITS, time_splits

Windows = dict[str, list[int]]

HINT_GAP_DAYS = 7  # a jump this long in the log's times suggests a second clock
WINDOW_NAMES = {"train": "training", "validation": "validation", "test": "test"}
CLOCKS = ("A request without context.ts is timed by the server's clock, a replay (vidrec "
          "traffic) by the simulation's")  # fmt: skip


@dataclass(frozen=True)
class Context:
    run_dir: Path
    settings: Settings

    @property
    def cfg(self) -> TrainConfig:
        return self.settings.train

    def dir(self, step: str) -> Path:
        d = self.run_dir / step
        d.mkdir(parents=True, exist_ok=True)
        return d


def build_dataset(ctx: Context, data: str) -> dict[str, Any]:
    out = ctx.dir("build_dataset") / "training.parquet"
    s = build_training_set(Path(data), out, ctx.settings.features)
    labelled = pq.read_table(out, columns=["ts", "label_click"])  # one read for every check
    ts = labelled.column("ts")
    c = ctx.cfg
    sp = time_splits(
        int(pc.min(ts).as_py()),
        int(pc.max(ts).as_py()),
        c.validation_days,
        c.test_days,
        c.gap_s,
        ctx.settings.features.label_horizon_s,
    )
    _require_one_clock(s["build_ts"], int(pc.max(ts).as_py()), s["label_pending"], data)
    windows = {n: [getattr(sp, n).start, getattr(sp, n).end] for n in SPLITS}
    for name in SPLITS:
        _require_clicks(labelled, name, windows[name], data)
    keep = ("rows", "positives", "label_pending", "rejected_total", "build_ts", "schema_hash")
    return {
        "training_set": str(out),
        "windows": windows,
        "snapshot_id": snapshot_id(Path(data)),
        **{k: s[k] for k in keep},
    }


def _require_one_clock(build_ts: int, settled: int, pending: int, data: str) -> None:
    """The log's newest fact (the build's "now", where the drift reference and the bundle's
    windows end) weeks after its newest settled impression: its last rows are on another
    clock. A request sent without `context.ts` is timed by the server's clock, a replay
    (`vidrec traffic`) by the simulation's; ingested together, the reference found no
    request in its days and evaluation failed with numpy's traceback."""
    days = (build_ts - settled) / DAY
    if days > HINT_GAP_DAYS:
        raise InvalidInput(
            f"{data}: the log's newest fact (ts {build_ts}) is {days:.0f} days after its "
            f"newest impression with a settled label (ts {settled}; {pending} impressions "
            f"are label-pending): rows on another clock? {CLOCKS}; leave out the parts that "
            "hold them",
            file=str(data),
        )


def _require_clicks(labelled: pa.Table, name: str, window: list[int], data: str) -> None:
    """Both classes in each window, or no model can learn or be evaluated: a clear error
    here, not a traceback steps on (a log whose watches carry no request_id has no clicks;
    a few rows on another clock leave the last windows empty). `labelled`: the training
    set's ts and label_click."""
    ts = pc.field("ts")
    rows = labelled.filter((ts >= window[0]) & (ts < window[1]))
    clicks = int(pc.sum(rows.column("label_click")).as_py() or 0)
    if clicks == 0 or clicks == rows.num_rows:
        hint = _clock_hint(labelled.column("ts"))
        raise InvalidInput(
            f"{data}: the {WINDOW_NAMES[name]} window [{window[0]}, {window[1]}) has "
            f"{rows.num_rows} impressions and {clicks} clicks: a model needs both (a click is "
            f"a watch whose request_id and video_id match a shown video's){hint}",
            file=str(data),
        )


def _clock_hint(times: pa.ChunkedArray) -> str:
    """Where the log's times jump by weeks, the rows after the jump are likely on another
    clock: a request without `context.ts` is timed by the server's clock, a replay (`vidrec
    traffic`) by the simulation's."""
    every = times.to_numpy()
    t = np.unique(every)
    if len(t) < 2:
        return ""
    i = int(np.argmax(np.diff(t)))
    days = (t[i + 1] - t[i]) / DAY
    if days < HINT_GAP_DAYS:
        return ""
    after = int(np.sum(every > t[i]))
    return (f"; the log's times jump by {days:.0f} days after ts {t[i]}, and {after} rows "
            f"follow: on another clock? {CLOCKS}")  # fmt: skip


def train_retrieval(ctx: Context, data: str, training_set: str, windows: Windows) -> dict[str, Any]:
    clicks = read_window(training_set, windows["train"], label_click=1)
    videos = read_videos(data, ctx.settings.features)
    catalog = videos_as_features(videos[videos.upload_ts < windows["train"][1]])
    rc = RetrievalConfig(epochs=ctx.cfg.retrieval_epochs, seed=ctx.cfg.seed)
    towers, stats = fit_towers(clicks, catalog, rc)
    out = ctx.dir("train_retrieval")
    towers.save(out)
    return {"retrieval": str(out), **stats}


def build_index(ctx: Context, data: str, retrieval: str, build_ts: int) -> dict[str, Any]:
    """Embed every video known at build time; those the towers never saw get content-only
    embeddings, exactly as serving adds new uploads later (no retraining)."""
    towers = Towers.load(Path(retrieval))
    videos = read_videos(data, ctx.settings.features)
    videos = videos[videos.upload_ts <= build_ts]
    ids = videos.video_id.to_numpy(np.int64)
    emb = towers.embed_items(videos_as_features(videos))
    index = IvfIndex.train(emb, seed=ctx.cfg.seed)
    index.add(ids, emb)
    out = ctx.dir("build_index")
    index.save(out)
    np.save(out / "item_ids.npy", ids)
    np.save(out / "item_embeddings.npy", emb)
    # what serving needs per indexed video: upload time (fresh pool) and creator (rules)
    videos[["video_id", "creator_id", "upload_ts"]].to_parquet(out / "items.parquet", index=False)
    return {
        "index": str(out),
        "items": len(ids),
        "content_only_items": int((~towers.encoder.is_known(ids)).sum()),
        "nlist": index.nlist,
        "nprobe": index.nprobe,
    }


def train_ranker(ctx: Context, training_set: str, windows: Windows) -> dict[str, Any]:
    """Baselines and both LightGBM rankers on the same rows: the report compares them."""
    train = read_window(training_set, windows["train"], COLUMNS)
    out = ctx.dir("train_ranker")
    seconds: dict[str, float] = {}
    models: dict[str, Any] = {
        "popularity": Popularity(),
        "logistic": LogisticRanker(seed=ctx.cfg.seed),
        "lightgbm_naive": LightGBMRanker(debias="none", rounds=ctx.cfg.ranker_rounds),
        "lightgbm_ipw": LightGBMRanker(debias="ipw", rounds=ctx.cfg.ranker_rounds),
    }
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(train)
        seconds[name] = round(time.perf_counter() - t0, 1)
        if isinstance(model, LightGBMRanker):
            assert model.booster is not None
            model.booster.save_model(str(out / f"{name}.txt"))
    write_reference(train, out / "reference.json")
    write_fallback(models["popularity"], out / "popularity.json")
    # baselines are run-internal artefacts read back by this run only
    (out / "baselines.pkl").write_bytes(
        pickle.dumps({"popularity": models["popularity"], "logistic": models["logistic"].model})
    )
    chosen = "lightgbm_ipw" if ctx.cfg.debias == "ipw" else "lightgbm_naive"
    exam = models["lightgbm_ipw"].examination
    return {
        "models": str(out),
        "ranker": str(out / f"{chosen}.txt"),
        "chosen": chosen,
        "train_rows": len(train),
        "fit_seconds": seconds,
        "examination": [round(float(x), 4) for x in exam] if exam is not None else None,
    }


def fetch_champion(ctx: Context) -> dict[str, Any]:
    """The current champion's ranker, to score it on this run's validation window."""
    registry = open_registry(ctx.settings.registry)
    try:
        info = registry.get("champion")
    except NotFound:
        return {"version": None, "ranker": None, "note": "no champion yet"}
    if info.manifest.schema_hash != FEATURES.schema_hash():
        # its ranker reads another feature vector: it cannot score these rows
        return {"version": info.version, "ranker": None, "note": "champion schema differs"}
    bundle = registry.download("champion", ctx.dir("fetch_champion"))
    return {"version": info.version, "ranker": str(bundle / "ranker" / "model.txt")}


def evaluate(
    ctx: Context,
    data: str,
    training_set: str,
    windows: Windows,
    retrieval: str,
    index: str,
    models: str,
    chosen: str,
    oracle: str | None = None,
    champion_ranker: str | None = None,
    build_ts: int | None = None,
) -> dict[str, Any]:
    return evaluate_run(
        ctx.settings,
        Path(data),
        Path(training_set),
        windows,
        Path(retrieval),
        Path(index),
        Path(models),
        chosen,
        Path(oracle) if oracle else None,
        ctx.dir("evaluate"),
        Path(champion_ranker) if champion_ranker else None,
        build_ts,
    )


def gate(
    ctx: Context,
    validation: dict[str, dict[str, float]],
    chosen: str,
    schema_hash: str,
    nonfinite_scores: int,
    champion_validation: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Candidate vs baselines vs the current champion, all on this run's validation window."""
    report = check_gates(
        ctx.settings.gates,
        validation[chosen],
        {b: validation.get(b, {}) for b in ctx.settings.gates.baselines},
        champion_validation,
        nonfinite_scores,
        schema_hash,
        FEATURES.schema_hash(),
    )
    return {"passed": report.passed, "gate_report": report.to_dict()}


def register(
    ctx: Context,
    build: dict[str, Any],
    retrieval: str,
    index: str,
    ranker: str,
    validation: dict[str, dict[str, float]],
    chosen: str,
    gate_report: dict[str, Any],
    serving_reference: str,
) -> dict[str, Any]:
    """Assemble the bundle; register it (champion if there is none yet, else challenger)
    only when every gate passed."""
    bundle = ctx.dir("bundle")
    shutil.copytree(retrieval, bundle / "retrieval", dirs_exist_ok=True)
    shutil.copytree(index, bundle / "retrieval" / "index", dirs_exist_ok=True)
    (bundle / "ranker").mkdir(exist_ok=True)
    shutil.copy(ranker, bundle / "ranker" / "model.txt")
    # train_ranker writes these beside the ranker
    for src, dst in (("popularity.json", "fallback/popularity.json"),
                     ("reference.json", "reference/features.json")):  # fmt: skip
        (bundle / dst).parent.mkdir(exist_ok=True)
        shutil.copy(Path(ranker).parent / src, bundle / dst)
    shutil.copy(serving_reference, bundle / "reference" / "serving.json")  # the drift baseline
    metrics = {f"validation.{k}": v for k, v in validation[chosen].items()}
    manifest = Manifest(
        model_name=ctx.settings.registry.model_name,
        feature_set=FEATURES.name,
        schema_hash=build["schema_hash"],
        training_window=tuple(build["windows"]["train"]),
        validation_window=tuple(build["windows"]["validation"]),
        data_snapshot_id=build["snapshot_id"],
        git_sha=git_sha(),
        created_at=int(time.time()),
        metrics=metrics,
        gates=gate_report["gates"],
        files=[],
    )
    (bundle / "MODEL_CARD.md").write_text(model_card(manifest, chosen, validation))
    manifest = manifest.model_copy(update={"files": bundle_files(bundle)})
    write_manifest(bundle, manifest)
    report = GateReport(tuple(GateResult(**r) for r in gate_report["gates"]))
    if not report.passed:
        failed = [f"{r.name}: {r.message}" for r in report.failed()]
        return {"registered": False, "bundle": str(bundle), "failed": failed}
    registry = open_registry(ctx.settings.registry)
    aliases = {a for v in registry.versions() for a in v.aliases}
    alias = "challenger" if "champion" in aliases else "champion"
    info = registry.register(bundle, report, alias)
    return {"registered": True, "bundle": str(bundle), "version": info.version, "alias": alias}


def write_reference(train: pd.DataFrame, path: Path, deciles: int = 10) -> None:
    """The training window's distribution of every model input: bin edges (its range and
    deciles, or one bin per category code: the buckets of serving's feature histograms,
    `vidrec.features.bins`), missing rate and range."""
    x = as_float_matrix(train, FEATURES)
    ref = {}
    for j, name in enumerate(FEATURES.model_inputs):
        col = x[:, j][np.isfinite(x[:, j])]
        categorical = name in CATEGORICAL_INPUTS
        edges = category_edges(col) if categorical else range_edges(col, deciles)
        ref[name] = {
            "kind": "categorical" if categorical else "numeric",
            "edges": [float(e) for e in edges],
            "missing_rate": float(1 - len(col) / max(len(x), 1)),
            "min": float(col.min()) if len(col) else None,
            "max": float(col.max()) if len(col) else None,
            "rows": len(x),
        }
    path.write_text(json.dumps({"feature_set": FEATURES.name, "features": ref}, indent=1))


def write_fallback(popularity: Popularity, path: Path, top: int = 500) -> None:
    """The popularity lists serving falls back to (unknown users, retrieval failures)."""
    lists = {"|".join(seg): ids[:top] for seg, ids in popularity.ranked.items()}
    path.write_text(json.dumps(lists))


def model_card(m: Manifest, chosen: str, validation: dict[str, dict[str, float]]) -> str:
    keys = list(next(iter(validation.values())))
    rows = "\n".join(
        f"| {name} | " + " | ".join(f"{vals[k]:.4f}" for k in keys) + " |"
        for name, vals in validation.items()
    )
    weighting = (
        ", clicks weighted by 1/examination(position), clipped" if chosen.endswith("ipw") else ""
    )
    return f"""# vidrec model card

Two-stage video recommender: two-tower retrieval (PyTorch, in-batch softmax with
log-Q correction; content + hashed-id item tower) over a faiss IVF index, then a
LightGBM ranker ({chosen}: binary objective on clicks{weighting}).

- feature set `{m.feature_set}`, schema hash `{m.schema_hash}`
- training window {m.training_window}, validation window {m.validation_window} (epoch s)
- data snapshot `{m.data_snapshot_id}`, code `{m.git_sha}`

## Validation window (logged slates)

| model | {" | ".join(keys)} |
|{"---|" * (1 + len(keys))}
{rows}

## Intended use and limits
Ranks videos for a signed-in user. Trained on logs of a popularity-driven
policy: clicks are position-biased (corrected by inverse examination weights)
and exposure-biased (videos never shown have no labels). Offline metrics on
logged clicks can disagree with online engagement; promote through shadow and
canary with online metrics, never on offline numbers alone.
"""
