"""`vidrec bench train`: the retrieval index and the ranker's scoring path.

ANN: IVF-Flat (`models/faiss_ivf.py`) against exact search (`models/exact.py`)
over the same synthetic item embeddings, at catalogue sizes serving will meet:
train and add time, single-query latency (one query per call, as serving
searches) and recall@k per `nprobe`, and whether items added after training
are found without retraining. It picks the `nprobe` serving should default to.

Ranker: one request's candidates scored by LightGBM and by the lleaves-compiled
model (`models/scorer.py`), interleaved in one run so the speed-up is a ratio
of like with like, and checked to give the same probabilities.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from vidrec.bench.files import save
from vidrec.bench.machine import machine
from vidrec.bench.train_table import table
from vidrec.models.exact import ExactIndex
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.lightgbm_scorer import LightGBMScorer
from vidrec.models.lleaves_scorer import LleavesScorer
from vidrec.models.scorer import TOLERANCE, Scorer, max_abs_diff, probe_rows

Array = npt.NDArray[Any]
TOPICS = 200
TOPIC_NOISE = 0.12  # per-dimension sd around the topic direction: cosine to it ~0.7 at dim 64
TARGET_RECALL = 0.95
EXACT_LATENCY_QUERIES = 200  # exact search takes ~10 ms a query at 1M items; 200 are plenty
SINGLE_ADDS = 20
WARMUP = 5


# ---------------------------------------------------------------- synthetic data


class Topics:
    """Two-tower-like embeddings: unit vectors scattered around ~200 topic directions.

    Real item embeddings cluster by topic, and topics differ in size (a few big
    genres, a long tail), which is what makes IVF lists uneven; uniform random
    vectors would have neither.
    """

    def __init__(self, dim: int, rng: np.random.Generator, topics: int = TOPICS) -> None:
        centers = rng.standard_normal((topics, dim)).astype(np.float32)
        self.centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
        sizes = 1.0 / np.arange(1, topics + 1) ** 0.8  # Zipf-like topic sizes
        self.weights = sizes / sizes.sum()
        self.rng = rng

    def draw(self, n: int) -> npt.NDArray[np.float32]:
        topic = self.rng.choice(len(self.centers), n, p=self.weights)
        noise = self.rng.standard_normal((n, self.centers.shape[1]), dtype=np.float32)
        x = self.centers[topic] + TOPIC_NOISE * noise
        return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- measuring


def _latency_ms(call: Callable[[int], object], n: int) -> dict[str, float]:
    """p50/p99 of `call(i)` for i < n, in ms, after a few untimed calls."""
    for i in range(min(WARMUP, n)):
        call(i)
    took = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        call(i)
        took[i] = time.perf_counter() - started
    return _percentiles(took * 1000)


def _percentiles(ms: Array) -> dict[str, float]:
    p50, p99 = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


@contextlib.contextmanager
def _one_faiss_thread() -> Iterator[None]:
    """Search as a serving replica should: one OpenMP thread per query.

    On a busy host, fanning one query out to a second thread waits for that
    thread to be scheduled: measured 16-24 ms per exact search over 20k items
    instead of 0.12 ms. Building the index keeps every thread.
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss / 2**20)


def _recall(found: Array, truth: Array) -> float:
    """Mean share of the exact top-k that the ANN top-k contains."""
    hits = [np.intersect1d(f, t).size for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / truth.shape[1])


# ---------------------------------------------------------------- ANN


def bench_ann(
    sizes: Sequence[int] = (100_000, 1_000_000),
    dim: int = 64,
    queries: int = 1000,
    k: int = 500,
    nprobe_values: Sequence[int] = (8, 16, 32, 64, 128, 256),
    seed: int = 0,
) -> dict[str, Any]:
    """IVF vs exact search per catalogue size; queries are drawn like the items.

    Exact search's latency is timed on the first min(queries, 200) queries (it
    is ~10 ms a query at 1M items); its top-k for recall covers all queries,
    searched as one batch.
    """
    results = [
        _bench_size(n, dim, queries, k, sorted(nprobe_values), seed + i)
        for i, n in enumerate(sizes)
    ]
    largest = max(results, key=lambda r: r["items"])
    return {
        "config": {
            "dim": dim,
            "queries": queries,
            "exact_latency_queries": min(queries, EXACT_LATENCY_QUERIES),
            "k": k,
            "topics": TOPICS,
            "topic_noise": TOPIC_NOISE,
            "target_recall": TARGET_RECALL,
            "seed": seed,
            "build_threads": _faiss_threads(),
            "search_threads": 1,
        },
        "results": results,
        "default_nprobe": largest["default_nprobe"],
    }


def _bench_size(
    n: int, dim: int, queries: int, k: int, nprobes: list[int], seed: int
) -> dict[str, Any]:
    topics = Topics(dim, np.random.default_rng(seed))
    items, q = topics.draw(n), topics.draw(queries)
    ids = np.arange(n, dtype=np.int64)
    out: dict[str, Any] = {"items": n, "vectors_mb": round(items.nbytes / 2**20, 1)}
    ivf = _build_ivf(ids, items, out)
    truth = _exact(ids, items, q, k, out)
    out["ivf"] = [_ivf_point(ivf, q, k, nprobe, truth) for nprobe in nprobes]
    out["default_nprobe"] = _pick_nprobe(out["ivf"])
    ivf.nprobe = out["default_nprobe"]
    out["add_without_retrain"] = _add_without_retrain(ivf, topics, n, k)
    del ivf, items
    gc.collect()
    return out


def _build_ivf(ids: Array, items: Array, out: dict[str, Any]) -> IvfIndex:
    rss = _rss_mb()
    started = time.perf_counter()
    ivf = IvfIndex.train(items)
    trained = time.perf_counter()
    ivf.add(ids, items)
    added = time.perf_counter()
    out |= {
        "nlist": ivf.nlist,
        "train_seconds": round(trained - started, 2),
        "add_seconds": round(added - trained, 2),
        "add_items_per_s": round(len(ids) / (added - trained)),
        "ivf_rss_delta_mb": round(_rss_mb() - rss, 1),
    }
    return ivf


def _exact(ids: Array, items: Array, q: Array, k: int, out: dict[str, Any]) -> Array:
    """Time exact search; return its top-k for every query, the truth for recall."""
    rss = _rss_mb()
    started = time.perf_counter()
    exact = ExactIndex(items.shape[1])
    exact.add(ids, items)
    out["exact_add_seconds"] = round(time.perf_counter() - started, 2)
    out["exact_rss_delta_mb"] = round(_rss_mb() - rss, 1)
    started = time.perf_counter()
    truth, _ = exact.search(q, k)
    out["exact_batch_seconds"] = round(time.perf_counter() - started, 2)
    timed = min(len(q), EXACT_LATENCY_QUERIES)
    with _one_faiss_thread():
        latency = _latency_ms(lambda i: exact.search(q[i : i + 1], k), timed)
    out["exact"] = {"queries": timed, **latency}
    return truth


def _ivf_point(ivf: IvfIndex, q: Array, k: int, nprobe: int, truth: Array) -> dict[str, Any]:
    ivf.nprobe = nprobe
    found = np.empty((len(q), k), dtype=np.int64)

    def one(i: int) -> None:
        found[i] = ivf.search(q[i : i + 1], k)[0][0]

    with _one_faiss_thread():
        latency = _latency_ms(one, len(q))
    return {
        "nprobe": nprobe,
        "effective_nprobe": ivf.probes(k),  # search raises nprobe for large k on small catalogues
        **latency,
        "recall_at_k": round(_recall(found, truth), 4),
    }


def _pick_nprobe(points: list[dict[str, Any]]) -> int:
    """The smallest nprobe reaching the target recall, else the most accurate one."""
    for p in points:  # sorted by nprobe
        if p["recall_at_k"] >= TARGET_RECALL:
            return int(p["nprobe"])
    return int(max(points, key=lambda p: p["recall_at_k"])["nprobe"])


def _add_without_retrain(ivf: IvfIndex, topics: Topics, n: int, k: int) -> dict[str, Any]:
    """New items (1% of the catalogue) go into the trained lists: are they found at once?"""
    fresh = topics.draw(max(1, n // 100))
    ids = np.arange(n, n + len(fresh), dtype=np.int64)
    started = time.perf_counter()
    ivf.add(ids, fresh)
    seconds = time.perf_counter() - started
    found, _ = ivf.search(fresh, k)  # each new item queried with its own vector
    one_by_one = topics.draw(SINGLE_ADDS)
    with _one_faiss_thread():  # a fresh video arriving while serving
        single = _latency_ms(
            lambda i: ivf.add(np.array([n + len(fresh) + i]), one_by_one[i : i + 1]), SINGLE_ADDS
        )
    return {
        "items": len(fresh),
        "nprobe": ivf.nprobe,
        "effective_nprobe": ivf.probes(k),
        "add_seconds": round(seconds, 3),
        "found_rate": float(np.mean(np.any(found == ids[:, None], axis=1))),
        "found_first_rate": float(np.mean(found[:, 0] == ids)),
        "single_add_ms": single,
    }


def _faiss_threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())


# ---------------------------------------------------------------- ranker scoring


def bench_ranker_scoring(
    model_txt: Path | None = None,
    candidates: int = 500,
    repeats: int = 200,
    seed: int = 0,
    rounds: int = 200,
) -> dict[str, Any]:
    """Latency of scoring one request's candidates: LightGBM vs lleaves.

    Without `model_txt`, trains a model with the ranker's PARAMS for `rounds`
    rounds on synthetic rows (25 features, some missing). Compile time is
    measured cold, into a throw-away cache directory.
    """
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="vidrec-bench-") as tmp:
        model: dict[str, Any] = {"trained_here": model_txt is None}
        if model_txt is None:
            model_txt, model["train_seconds"] = _train_model(Path(tmp) / "model.txt", rounds, rng)
        reference = LightGBMScorer.load(model_txt)
        fast = LleavesScorer.load(model_txt, cache_dir=Path(tmp) / "cache")
        started = time.perf_counter()
        LleavesScorer.load(model_txt, cache_dir=Path(tmp) / "cache")
        cached_load = time.perf_counter() - started
        model |= {"trees": reference.booster.num_trees(), "features": reference.num_features}
        x = _synthetic_rows(rng, candidates, reference.num_features)
        timings = _interleaved(x, [reference, fast], repeats)
        diff = max(
            max_abs_diff(fast, reference, x),
            max_abs_diff(fast, reference, probe_rows(reference.num_features)),
        )
    return {
        "model": model,
        "candidates": candidates,
        "repeats": repeats,
        **timings,
        "speedup_p50": round(timings["lightgbm"]["p50_ms"] / timings["lleaves"]["p50_ms"], 2),
        "speedup_p99": round(timings["lightgbm"]["p99_ms"] / timings["lleaves"]["p99_ms"], 2),
        "compile_seconds": round(fast.compile_seconds or 0.0, 2),
        "cached_load_seconds": round(cached_load, 3),
        "max_abs_diff": diff,
        "equal_to_1e-6": bool(diff <= TOLERANCE),
    }


def _interleaved(x: Array, scorers: list[Scorer], repeats: int) -> dict[str, dict[str, float]]:
    """Alternate the scorers call by call, so machine noise hits both alike."""
    took = {s.kind: np.empty(repeats) for s in scorers}
    for r in range(-WARMUP, repeats):
        for s in scorers:
            started = time.perf_counter()
            s.score(x)
            if r >= 0:
                took[s.kind][r] = time.perf_counter() - started
    return {kind: _percentiles(t * 1000) for kind, t in took.items()}


def _synthetic_rows(rng: np.random.Generator, n: int, features: int) -> Array:
    x = rng.standard_normal((n, features))
    x[:, :8][rng.random((n, 8)) < 0.3] = np.nan  # windowed counts are missing for new entities
    return x


def _train_model(path: Path, rounds: int, rng: np.random.Generator) -> tuple[Path, float]:
    """A model shaped like the ranker's: its PARAMS, 25 features, a non-linear label."""
    import lightgbm as lgb

    from vidrec.training.ranker import PARAMS  # a bench may reach up the stack

    x = _synthetic_rows(rng, 20_000, 25)  # >= 100 rows for each of 63 leaves, with room
    z = np.nan_to_num(x)
    logit = z[:, 0] - z[:, 9] + np.isnan(x[:, 1]) + z[:, 10] * z[:, 11] + np.sin(2 * z[:, 12])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    started = time.perf_counter()
    # one thread: on a busy 2-core host OpenMP's second thread made this 50x slower
    params = PARAMS | {"num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
    seconds = round(time.perf_counter() - started, 2)
    booster.save_model(str(path))
    return path, seconds


# ---------------------------------------------------------------- report


def write_report(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write `out/train.json`, `out/train.md` and `out/train.png`; `result` holds "ann"
    and/or "ranker_scoring" (and "pipeline")."""
    report = {
        "benchmark": "train",
        "machine": machine("faiss-cpu", "lightgbm", "lleaves"),
        **result,
    }
    files = save(out, "train", report, table(report))
    _plot(report, Path(files["plot"]))
    return report | files


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("ann", "ranker_scoring") if p in report]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4))
    for ax, panel in zip(np.atleast_1d(axes), panels, strict=False):
        (_plot_ann if panel == "ann" else _plot_scoring)(ax, report[panel])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_ann(ax: Any, ann: dict[str, Any]) -> None:
    k = ann["config"]["k"]
    for r in ann["results"]:
        # set nprobes that search raised to the same effective one are the same point
        points = list({p["effective_nprobe"]: p for p in reversed(r["ivf"])}.values())[::-1]
        line = ax.plot(
            [p["p99_ms"] for p in points],
            [p["recall_at_k"] for p in points],
            marker="o",
            label=f"IVF, {r['items']:,} items (nlist {r['nlist']})",
        )[0]
        for p in points:
            ax.annotate(str(p["effective_nprobe"]), (p["p99_ms"], p["recall_at_k"]), fontsize=7)
        ax.scatter([r["exact"]["p99_ms"]], [1.0], marker="*", s=120, color=line.get_color())
        ax.annotate("exact", (r["exact"]["p99_ms"], 1.0), fontsize=7, va="bottom")
    ax.axhline(ann["config"]["target_recall"], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter("{x:g}")
    ax.xaxis.set_minor_formatter("")
    ax.set_xlabel("single-query p99 latency, ms (log)")
    ax.set_ylabel(f"recall@{k} vs exact")
    ax.set_title("ANN: recall vs latency (labels: nprobe searched)")
    ax.legend(fontsize=7, loc="lower right")


def _plot_scoring(ax: Any, scoring: dict[str, Any]) -> None:
    kinds = ["lightgbm", "lleaves"]
    x = np.arange(len(kinds))
    for dx, stat in ((-0.2, "p50_ms"), (0.2, "p99_ms")):
        values = [scoring[kind][stat] for kind in kinds]
        bars = ax.bar(x + dx, values, 0.4, label=stat.replace("_ms", ""))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8)
    ax.set_xticks(x, kinds)
    ax.set_ylabel(f"ms per batch of {scoring['candidates']} candidates")
    ax.set_title(
        f"Ranker scoring: {scoring['model']['trees']} trees, x{scoring['speedup_p50']} at p50"
    )
    ax.legend(fontsize=8)


def run(scale: str, sizes: Sequence[int], out: Path, pipeline: bool = True) -> dict[str, Any]:
    """The whole `vidrec bench train`: pipeline step times at `scale` (training up to the
    evaluate step, on the cached simulation), the ANN at `sizes`, and the trained ranker's
    scoring of one request's candidates."""
    result: dict[str, Any] = {}
    model_txt: Path | None = None
    if pipeline:
        result["pipeline"], model_txt = _pipeline_times(scale, out)
    result["ann"] = bench_ann(sizes=tuple(sizes))
    result["ranker_scoring"] = bench_ranker_scoring(model_txt=model_txt)
    return write_report(result, out)


def _pipeline_times(scale: str, out: Path) -> tuple[dict[str, Any], Path]:
    from vidrec.bench.datasets import cached_simulation
    from vidrec.config import RegistryConfig, Settings
    from vidrec.training.run import run_training

    sim = cached_simulation(scale)
    run_dir = out / f"pipeline-{scale}"
    shutil.rmtree(run_dir, ignore_errors=True)
    settings = Settings(registry=RegistryConfig(root=run_dir / "registry"))
    s = run_training(settings, sim, run_dir=run_dir, until="evaluate")
    rec = json.loads((run_dir / "run.json").read_text())
    ranker = Path(next(x for x in rec["steps"] if x["name"] == "train_ranker")["outputs"]["ranker"])
    times = {"scale": scale, "step_seconds": s["step_seconds"], "total_seconds": s["seconds"]}
    return times, ranker
