"""`vidrec bench drift`: how the drift monitor does on the simulator's scenarios.

Per scenario (none, interest-shift, new-market, catalog-surge): simulate a
platform whose change starts on `onset_day`, train on the log up to two days
before it (the pipeline also writes the drift reference), then replay the
logged requests after that cut through the serving path offline, window by
window, and assess each window against the reference exactly as `vidrec
monitor` does (same bins, same detector, same correction). Reports the false
alarm rate (share of drifting windows where nothing changed: every window of
`none`, and the pre-onset windows of the others), the detection delay in windows
after onset, and which features flag; plots p-values over time, onset marked. The same
is reported for the online CTR alert's condition on the served slates, clicked as the
simulator's users click: concept drift (interest-shift) shows only in outcomes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vidrec.bench.drift_table import table
from vidrec.bench.files import save
from vidrec.config import (
    DAY,
    SCENARIOS,
    T0,
    AlertConfig,
    MonitoringConfig,
    Settings,
    sim_config,
)
from vidrec.data.oracle import Oracle, click_probability
from vidrec.data.simulate import simulate
from vidrec.features.bins import FeatureBins, score_bins
from vidrec.features.definitions import FEATURES, REQUEST_INPUTS
from vidrec.features.hours import hour_counts
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.two_tower import Towers
from vidrec.monitoring.assess import Assessment, Window, assess
from vidrec.monitoring.ctr import ctr_dropped
from vidrec.monitoring.detector import BinnedDetector, SampleDetector
from vidrec.monitoring.reference import Reference
from vidrec.training.data import read_videos
from vidrec.training.evaluate import load_rankers
from vidrec.training.run import run_training
from vidrec.training.serving_reference import (
    OfflineServing,
    ServedRows,
    as_snapshot,
    logged_requests,
    request_inputs,
    sample_requests,
)

# time column of each table: the training copy keeps what was known before the cut
TIME_COLUMNS = {"impressions": "ts", "watches": "label_ts", "users": "signup_ts",
                "videos": "upload_ts"}  # fmt: skip
PRE_ONSET_DAYS = 2
SERVE_REQUESTS = 8_000  # requests served offline at once (~4M candidate rows)
BENCH_TRAIN = {"validation_days": 1.0, "test_days": 1.0, "retrieval_epochs": 2,
               "ranker_rounds": 100, "eval_requests": 200}  # fmt: skip


def run(
    settings: Settings,
    out: Path,
    scale: str = "small",
    days: int = 42,
    onset_day: int = 36,
    window_hours: float = 4.0,
    window_requests: int = 2000,
    seed: int = 0,
    seeds: int = 3,
    quiet_seeds: int = 6,
    scenarios: tuple[str, ...] = SCENARIOS,
    tick: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    from vidrec.monitoring.alibi_detector import ChiSquareDetector
    from vidrec.monitoring.alibi_ks import KSDetector

    t0 = time.perf_counter()
    # a short log per scenario: one day each for validation and test, a quick model; the
    # reference's users arrive within a window as long as the bench's (reference_lookback_s)
    train = settings.train.model_copy(
        update={**BENCH_TRAIN, "reference_lookback_s": int(window_hours * 3600)}
    )
    settings = settings.model_copy(update={"train": train})
    cfg = settings.monitoring.model_copy(update={"min_requests": min(window_requests, 50)})
    results = {}
    for scenario in scenarios:
        # every scenario runs on several platforms (a delay is one draw per platform), `none`
        # on more: a rate near 1 % needs many quiet windows
        runs = []
        for s in range(seed, seed + (quiet_seeds if scenario == "none" else seeds)):
            tick(f"{scenario} (seed {s})")
            runs.append(_scenario(settings, cfg, ChiSquareDetector(), KSDetector(),
                                  out / f"{scenario}-{s}", scale, days, onset_day,
                                  window_hours, window_requests, s, scenario))  # fmt: skip
        results[scenario] = _summaries(scenario, [w for r in runs for w in r["windows"]],
                                       [w for r in runs for w in r["samples"]])  # fmt: skip
    report = {
        "scale": scale,
        "train": BENCH_TRAIN,
        "days": days,
        "onset_day": onset_day,
        "window_hours": window_hours,
        "window_requests": window_requests,
        "reference": {
            k: getattr(train, f"reference_{k}")
            for k in ("days", "block_s", "lookback_s", "requests")
        },
        "p_value": cfg.p_value,
        "correction": cfg.correction,
        "seed": seed,
        "seeds": seeds,
        "quiet_seeds": quiet_seeds,
        "scenarios_run": list(scenarios),
        "targets": {"false_alarm_rate_max": 0.01, "detection_delay_windows_max": 2},
        "false_alarms_pooled": {
            signal: pooled_false_alarms(results, signal)
            for signal in ("drift", "samples_mode", "ctr_drop")
        },
        "scenarios": {s: _brief(r) for s, r in results.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    files = save(out, "drift", {**report, "windows": {
        s: r["windows"] for s, r in results.items()}, "samples_mode_windows": {
        s: r["samples_mode"]["windows"] for s, r in results.items()}}, table(report))  # fmt: skip
    _plot(results, report, Path(files["plot"]))
    return {**report, **files}


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    """A scenario's summary without its windows (those go to the report file only)."""
    out = _without(r, "windows")
    for signal in ("samples_mode", "ctr_drop", "drift_or_ctr_drop"):
        if signal in out:
            out[signal] = _without(out[signal], "windows")
    return out


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def _scenario(
    settings: Settings,
    cfg: MonitoringConfig,
    detector: BinnedDetector,
    sample_detector: SampleDetector,
    out: Path,
    scale: str,
    days: int,
    onset_day: int,
    window_hours: float,
    window_requests: int,
    seed: int,
    scenario: str,
) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    sim = out / "sim"
    sim_cfg = sim_config(scale, {"days": days, "scenario_day": onset_day})
    simulate(sim_cfg, scenario, seed, sim)  # type: ignore[arg-type]
    slate = sim_cfg.slate_size
    cut = T0 + (onset_day - PRE_ONSET_DAYS) * DAY
    trained = _train(settings, sim, cut, out)
    onset = T0 + onset_day * DAY
    frame, edges = _requests(sim, cut, window_hours, window_requests, seed)
    videos = read_videos(sim, settings.features)
    path = OfflineServing(settings, sim, trained["towers"], trained["index"], videos,
                          trained["ranker"])  # fmt: skip
    bins = FeatureBins.load(trained["edges"], FEATURES.model_inputs)
    ref, names = trained["reference"], list(cfg.sample_features)
    oracle, rng = Oracle.load(sim / "oracle"), np.random.default_rng(seed)
    windows, samples, shown = [], [], []
    for i, rows in _served(path, frame, edges):
        lo, hi = edges[i], edges[i + 1]
        part = frame[frame.window == i]
        mask = np.isin(rows.request_id, part.request_id.to_numpy())
        served = ServedRows(rows.request_id[mask], rows.x[mask], rows.scores[mask],
                            None if rows.video_id is None else rows.video_id[mask])  # fmt: skip
        w = _window(served, len(part), bins, hi - lo, hi)
        windows.append(_row(i, lo, hi, onset, seed, assess(ref, w, cfg, detector)))
        # samples mode: the same window, its users' own inputs tested on values
        values = dict(zip(names, _inputs(served, part, names, seed + i).T, strict=True))
        a = assess(ref, replace(w, samples=values), cfg, detector, sample_detector)
        samples.append(_row(i, lo, hi, onset, seed, a))
        shown.append(_outcomes(served, part, oracle, slate, rng))
    alerts = cfg.alerts
    span, baseline = (math.ceil(s / (window_hours * 3600))
                      for s in (alerts.ctr_window_s, alerts.ctr_baseline_window_s))  # fmt: skip
    drops = ctr_drops(shown, alerts, span, baseline)
    for row, (imps, clicks), drop in zip(windows, shown, drops, strict=True):
        row.update(impressions=imps, clicks=clicks, ctr_drop=drop)
    return {"windows": windows, "samples": samples}


def _served(
    path: OfflineServing, frame: pd.DataFrame, edges: list[int]
) -> Iterator[tuple[int, ServedRows]]:
    """(window, the rows serving produced for a stretch of windows holding it), each window
    served at its end. Served a stretch at a time: a demo-scale platform's windows hold
    ~25M candidate rows together, more than memory."""
    sizes = frame.groupby("window").size()
    groups: list[list[int]] = [[]]
    held = 0
    for i in range(len(edges) - 1):
        if groups[-1] and held + sizes.get(i, 0) > SERVE_REQUESTS:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += sizes.get(i, 0)
    for group in groups:
        part = frame[frame.window.isin(group)]
        rows = path.serve(as_snapshot(part, np.asarray(edges[1:])[part.window.to_numpy()]))
        yield from ((i, rows) for i in group)


def _summaries(
    scenario: str, windows: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each signal's summary over a scenario's windows (of every seed it ran)."""
    either = [_as_alarm(w, bool(w["ctr_drop"]) or w["status"] == "drift") for w in windows]
    return {**_summary(scenario, windows),
            "samples_mode": _summary(scenario, samples),
            "ctr_drop": _summary(scenario, [_as_alarm(w, w["ctr_drop"]) for w in windows]),
            "drift_or_ctr_drop": _summary(scenario, either),
            "served_ctr": [_served_ctr(ws) for ws in _by_seed(windows)]}  # fmt: skip


def _served_ctr(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One platform's CTR of the served slates before and after onset: how much the
    change moved the outcomes the CTR alert watches."""

    def ctr(after: bool) -> float | None:
        ws = [w for w in windows if w["after_onset"] == after]
        n = sum(w["impressions"] for w in ws)
        return sum(w["clicks"] for w in ws) / n if n else None

    before, after = ctr(False), ctr(True)
    change = after / before - 1 if before and after is not None else None
    return {"seed": windows[0]["seed"], "before": _round(before), "after": _round(after),
            "change": _round(change)}  # fmt: skip


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def pooled_false_alarms(results: dict[str, Any], signal: str) -> dict[str, Any]:
    """One signal's false alarms over the quiet windows of every scenario, with the
    one-sided 95 % Clopper-Pearson upper bound of its rate (what "<= 1 %" can claim)."""
    from scipy.stats import beta

    parts = [r if signal == "drift" else r[signal] for r in results.values()]
    quiet = sum(p["quiet_windows"] for p in parts)
    alarms = sum(p["false_alarm_windows"] for p in parts)
    upper = float(beta.ppf(0.95, alarms + 1, quiet - alarms)) if quiet > alarms else 1.0
    return {"quiet_windows": quiet, "false_alarm_windows": alarms,
            "false_alarm_rate": round(alarms / quiet, 4) if quiet else None,
            "rate_upper_95": round(upper, 4)}  # fmt: skip


def _outcomes(
    served: ServedRows, part: pd.DataFrame, oracle: Oracle, slate: int, rng: np.random.Generator
) -> tuple[int, int]:
    """(impressions, clicks) of the window's slates: each request's top `slate` candidates
    by score, clicked as the simulator's users click (examination by position, then the
    oracle's click probability at the request's time): the online CTR serving would see."""
    rows = pd.DataFrame({"request_id": served.request_id, "video_id": served.video_id,
                         "score": served.scores})  # fmt: skip
    ranked = rows.sort_values(["request_id", "score"], ascending=[True, False], kind="stable")
    ranked["position"] = ranked.groupby("request_id").cumcount()
    top = ranked[ranked.position < slate].merge(part[["request_id", "user_id", "ts"]],
                                                on="request_id", how="left")  # fmt: skip
    video, user, ts = (top[c].to_numpy(np.int64) for c in ("video_id", "user_id", "ts"))
    p = oracle.examination(top.position.to_numpy()) * click_probability(oracle, user, video, ts)
    return len(top), int((rng.random(len(p)) < p).sum())


def ctr_drops(
    shown: list[tuple[int, int]], a: AlertConfig, span: int, baseline: int
) -> list[bool | None]:
    """Per window, `VidrecCTRDrop`'s condition (`ctr_dropped`) on the `span` windows ending
    with it against the `baseline` windows before those (each side pooled); None (not
    tested) for the first windows, which lack either. The rule's impression-rate floor is
    left out: a simulated window's rate says nothing about a real service's."""

    def pooled(part: list[tuple[int, int]]) -> tuple[int, int]:
        return sum(n for n, _ in part), sum(c for _, c in part)

    out: list[bool | None] = []
    for i in range(len(shown)):
        start = i + 1 - span
        if start - baseline < 0:
            out.append(None)
            continue
        now, before = pooled(shown[start : i + 1]), pooled(shown[start - baseline : start])
        out.append(ctr_dropped(now, before, a))
    return out


def _as_alarm(w: dict[str, Any], alarm: bool | None) -> dict[str, Any]:
    """A window row whose status is `alarm` (another signal than feature drift; None: the
    signal could not be tested there)."""
    status = "insufficient_data" if alarm is None else "drift" if alarm else "ok"
    return {**w, "status": status, "drifting": [], "prediction_drift": False}


def _inputs(served: ServedRows, part: pd.DataFrame, names: list[str], seed: int) -> Any:
    """`names` of REQUEST_INPUTS for one request per user of `part` (served as `served`),
    as serving logs them."""
    x = request_inputs(served, part, seed)
    return x[:, [REQUEST_INPUTS.index(n) for n in names]]


def _train(settings: Settings, sim: Path, cut: int, out: Path) -> dict[str, Any]:
    """The pipeline (up to evaluate: no registry) on the log as it was at `cut`."""
    data = out / "train-data"
    data.mkdir(parents=True)
    for name, col in TIME_COLUMNS.items():
        t = pq.read_table(sim / f"{name}.parquet")
        pq.write_table(t.filter(pd.Series(t.column(col).to_numpy() < cut).to_numpy()),
                       data / f"{name}.parquet")  # fmt: skip
    shutil.copy(sim / "manifest.json", data / "manifest.json")
    run_dir = out / "run"
    run_training(settings, data, run_dir=run_dir, until="evaluate")
    rec = json.loads((run_dir / "run.json").read_text())
    outputs = {s["name"]: s["outputs"] for s in rec["steps"]}
    models = Path(outputs["train_ranker"]["models"])
    chosen = outputs["train_ranker"]["chosen"]
    reference_dir = out / "reference"
    (reference_dir / "reference").mkdir(parents=True)
    shutil.copy(models / "reference.json", reference_dir / "reference" / "features.json")
    shutil.copy(outputs["evaluate"]["serving_reference"],
                reference_dir / "reference" / "serving.json")  # fmt: skip
    return {
        "towers": Towers.load(Path(outputs["train_retrieval"]["retrieval"])),
        "index": IvfIndex.load(Path(outputs["build_index"]["index"])),
        "ranker": load_rankers(models)[chosen],
        "edges": models / "reference.json",
        "reference": Reference.load(reference_dir, "bench", created_at=cut),
    }


def _requests(
    sim: Path, cut: int, window_hours: float, per_window: int, seed: int
) -> tuple[pd.DataFrame, list[int]]:
    """The logged requests of each window [e - window_hours, e) after the cut, as the
    monitor would see them (at most `per_window`, sampled), with the window edges."""
    step = int(window_hours * 3600)
    log = logged_requests(sim, cut)
    ends = list(range(cut + step, int(log.ts.max()) + 2, step))
    frames = [sample_requests(log, e - step, e, per_window, seed + i).assign(window=i)
              for i, e in enumerate(ends)]  # fmt: skip
    return pd.concat(frames, ignore_index=True).sort_values("request_id"), [cut, *ends]


def _window(
    served: ServedRows, requests: int, bins: FeatureBins, seconds: int, as_of: int
) -> Window:
    """One window's histograms from the rows of its `requests` requests, served as of
    `as_of`."""
    binned = bins.count(served.x)
    return Window(
        requests=float(requests),
        features={n: np.asarray(b.counts) for n, b in binned.items()},
        missing={n: float(b.missing) for n, b in binned.items()},
        score=np.asarray(score_bins(served.scores).counts),
        seconds=seconds,
        hours=requests * np.asarray(hour_counts(as_of).counts),
    )


def _row(i: int, lo: int, hi: int, onset: int, seed: int, a: Assessment) -> dict[str, Any]:
    return {
        "seed": seed,
        "window": i,
        "end_day": round((hi - T0) / DAY, 3),
        "after_onset": hi > onset,  # its window ends after onset
        "status": a.status,
        "requests": a.requests,
        "drifting": a.drifting,
        "prediction_drift": a.prediction_drifted,
        "p_values": {f.feature: f.p_value for f in a.features},
        "effects": {f.feature: round(f.effect, 4) for f in a.features},
        "prediction_p_value": a.prediction.p_value,
        "reference_hours": list(a.reference_hours),
    }


def _summary(scenario: str, windows: list[dict[str, Any]]) -> dict[str, Any]:
    tested = [w for w in windows if w["status"] != "insufficient_data"]
    quiet = [w for w in tested if scenario == "none" or not w["after_onset"]]
    alarms = [w for w in quiet if w["status"] == "drift"]
    after = [w for w in tested if w["after_onset"]] if scenario != "none" else []
    # per platform: the first flagged window after onset (0: the first one), None: never
    delays = [next((k for k, w in enumerate(after_s) if w["status"] == "drift"), None)
              for after_s in _by_seed(after)]  # fmt: skip
    detected = round(sum(w["status"] == "drift" for w in after) / len(after), 3) if after else None
    flagged: dict[str, int] = {}
    for w in after:
        for f in w["drifting"] + (["predictions"] if w["prediction_drift"] else []):
            flagged[f] = flagged.get(f, 0) + 1
    return {
        "windows_tested": len(tested),
        "windows_insufficient": len(windows) - len(tested),
        "false_alarm_windows": len(alarms),
        "false_alarm_rate": round(len(alarms) / len(quiet), 4) if quiet else None,
        "quiet_windows": len(quiet),
        # the worst platform's; None when one of them never flagged
        "detection_delay_windows": _worst(delays),
        "detection_delays": delays,
        "windows_after_onset": len(after),
        "detected_share_after_onset": detected,
        "features_flagged_after_onset": dict(sorted(flagged.items(), key=lambda kv: -kv[1])),
        "windows": windows,
    }


def _title(scenario: str, r: dict[str, Any], report: dict[str, Any]) -> str:
    n = report["quiet_seeds"] if scenario == "none" else report["seeds"]
    parts = []
    for name, x in (("drift", r), ("CTR drop", r["ctr_drop"])):
        delays = "" if scenario == "none" else f", delays {x['detection_delays']}"
        parts.append(f"{name}: false alarms {x['false_alarm_rate']}{delays}")
    return f"{scenario} ({n} platforms, the first drawn)\n" + "; ".join(parts)


def _worst(delays: list[int | None]) -> int | None:
    found = [d for d in delays if d is not None]
    return max(found) if found and len(found) == len(delays) else None


def _by_seed(windows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    seeds = list(dict.fromkeys(w["seed"] for w in windows))
    return [[w for w in windows if w["seed"] == s] for s in seeds]


def _plot(results: dict[str, Any], report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(9, 2.6 * len(results)), sharex=True)
    onset = report["onset_day"]
    for ax, (scenario, r) in zip(np.atleast_1d(axes), results.items(), strict=True):
        ws = _by_seed(r["windows"])[0]  # one platform per panel: the first drawn
        days = [w["end_day"] for w in ws]
        feats = sorted({f for w in ws for f in w["p_values"]})
        for f in feats:
            p = [max(w["p_values"].get(f, np.nan), 1e-12) for w in ws]
            flagged = any(f in w["drifting"] for w in ws)
            ax.plot(days, p, lw=1.2 if flagged else 0.5, alpha=1 if flagged else 0.35,
                    label=f if flagged else None)  # fmt: skip
        # the predictions are one more look of the family
        ax.axhline(report["p_value"] / (len(feats) + 1), color="k", ls=":", lw=0.8)
        if scenario != "none":
            ax.axvline(onset, color="r", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_ylabel("p-value")
        ax.set_title(_title(scenario, r, report), fontsize=9)
        if any(w["drifting"] for w in ws):
            ax.legend(fontsize=6, ncol=3, loc="lower left")
    np.atleast_1d(axes)[-1].set_xlabel(
        "simulated day at the window's end (red: onset; dotted: Bonferroni level)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
