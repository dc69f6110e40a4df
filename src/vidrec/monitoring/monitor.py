"""`vidrec monitor`: every interval, each serving version's last window against its
reference; results exported to Prometheus, every action written to an event log.

The monitor reads serving through Prometheus (the same histograms a dashboard
shows), so it runs wherever Prometheus is reachable and never imports
`serving`. In samples mode it also reads serving's logged request features
(`request_log.py`): their own inputs are tested on values (KS), and an online
detector watches them as a stream. On drift sustained in the champion it starts a retraining, whose
gates decide whether a challenger is registered.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from vidrec.config import MonitoringConfig
from vidrec.errors import VidrecError
from vidrec.monitoring.assess import (
    SCORE,
    Assessment,
    Window,
    assess,
    retrain_reason,
    streaks,
    with_missing,
)
from vidrec.monitoring.detector import (
    Array,
    BinnedDetector,
    OnlineDetector,
    OnlineResult,
    SampleDetector,
)
from vidrec.monitoring.metrics import MonitorMetrics
from vidrec.monitoring.prometheus import MetricsProvider
from vidrec.monitoring.reference import Reference, References
from vidrec.monitoring.request_log import read_inputs
from vidrec.monitoring.retrain import Retrainer
from vidrec.monitoring.window import read_window, serving_versions

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(
        self,
        cfg: MonitoringConfig,
        provider: MetricsProvider,
        references: References,
        detector: BinnedDetector,
        retrainer: Retrainer,
        events: Path,
        metrics: MonitorMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sample_detector: SampleDetector | None = None,
        online: Callable[[Array], OnlineDetector] | None = None,
    ) -> None:
        """`sample_detector` and `online` (a detector calibrated on reference rows of
        `cfg.sample_features`) are samples mode's."""
        self.cfg, self.provider, self.references = cfg, provider, references
        self.detector, self.retrainer, self.clock = detector, retrainer, clock
        self.metrics = metrics or MonitorMetrics()
        self.events = events
        events.parent.mkdir(parents=True, exist_ok=True)
        self.streaks: dict[tuple[str, str], dict[str, int]] = {}
        self.last_retrain: float | None = None
        self.sample_detector, self.online = sample_detector, online
        self.online_detectors: dict[tuple[str, str], OnlineDetector] = {}
        self.online_fed: dict[tuple[str, str], float] = {}  # served_at of the last row fed

    def run_once(self) -> dict[str, Any]:
        now = self.clock()
        event: dict[str, Any] = {"ts": round(now, 3)}
        self._retraining_finished(event)
        try:
            event["variants"] = self._assess_all(now)
            result = "ok" if event["variants"] else "no_data"
        except VidrecError as exc:  # Prometheus down, bundle missing: say so, try again later
            event["error"] = exc.to_dict()
            result = "error"
        self.metrics.runs.labels(result).inc()
        event["result"] = result
        if result == "ok":
            event["retraining"] = self._maybe_retrain(now)
        self.metrics.last_run.set(self.clock())
        self._log(event)
        return event

    def warm(self) -> None:
        """Import the detectors' library now (Alibi Detect takes seconds on first use) and
        calibrate the online detectors of the versions serving now, so a first run that
        must happen on time does."""
        self.detector.test([np.ones(2, dtype=np.int64)], [np.ones(2, dtype=np.int64)])
        if self.sample_detector is not None:
            self.sample_detector.test([np.arange(3.0)], [np.arange(3.0)])
        if self.cfg.mode == "samples" and self.online is not None:
            for key in serving_versions(self.provider):
                ref = self.references.get(key[1])
                if ref.input_names:
                    self._online_detector(key, ref)

    def await_retraining(self, timeout_s: float) -> dict[str, Any] | None:
        """Block until the running retraining ends (logged and counted like in a run); its
        result, or None when none was running or it outlasted the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.retrainer.running and time.monotonic() < deadline:
            time.sleep(1)
        event: dict[str, Any] = {"ts": round(self.clock(), 3)}
        finished = self._retraining_finished(event)
        if len(event) > 1:  # more than the timestamp
            self._log(event)
        return finished

    def _retraining_finished(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The finished retraining's result (also put in `event`), once; None meanwhile."""
        try:
            finished = self.retrainer.poll()
        except VidrecError as exc:  # its Job unreadable for now: still pending, ask next run
            event["retraining_error"] = exc.to_dict()
            log.warning("retraining: %s", exc.message)
            return None
        if finished is not None:
            self.metrics.retrains.labels(finished["result"]).inc()
            event["retraining_finished"] = finished
        return finished

    def _assess_all(self, now: float) -> dict[str, Any]:
        out = {}
        for variant, version in serving_versions(self.provider):
            ref = self.references.get(version)
            window = read_window(self.provider, variant, version, self.cfg.window_s)
            online = None
            if self.cfg.mode == "samples" and ref.input_names:
                window, online = self._with_samples(variant, version, ref, window, now)
            a = assess(ref, window, self.cfg, self.detector, self.sample_detector)
            key = (variant, version)
            self.streaks[key] = streaks(self.streaks.get(key, {}), a)
            self.metrics.record(variant, version, a, self.streaks[key], now - ref.created_at)
            out[variant] = summary(version, a, self.streaks[key])
            if online is not None:
                self.metrics.record_online(variant, version, online)
                out[variant]["online"] = {"drift": online.drift, "seen": online.seen,
                                          "ratio": online.ratio}  # fmt: skip
        return out

    def _with_samples(
        self, variant: str, version: str, ref: Reference, window: Window, now: float
    ) -> tuple[Window, OnlineResult | None]:
        assert self.cfg.request_log is not None  # the config requires it in samples mode
        logged = read_inputs(self.cfg.request_log, variant, version,
                             now - self.cfg.window_s, now, seed=int(now))  # fmt: skip
        names = list(self.cfg.sample_features)
        window = replace(window, samples={n: logged.column(n) for n in names})
        if self.online is None:
            return window, None
        key = (variant, version)
        detector = self._online_detector(key, ref)
        fresh = logged.served_at > self.online_fed.get(key, -math.inf)
        if fresh.any():
            self.online_fed[key] = float(logged.served_at[fresh].max())
        return window, detector.update(_columns(logged.users[fresh], logged.names, names))

    def _online_detector(self, key: tuple[str, str], ref: Reference) -> OnlineDetector:
        """Calibrated at first use (seconds), one per variant and version, on the reference
        block of the data's end: a stream has no window to pick blocks by, and the store
        holds that snapshot when the version ships."""
        assert self.online is not None
        if key not in self.online_detectors:
            names = list(self.cfg.sample_features)
            ref = ref.at_data_end()
            self.online_detectors[key] = self.online(_columns(ref.inputs, ref.input_names, names))
        return self.online_detectors[key]

    def _maybe_retrain(self, now: float) -> dict[str, Any]:
        champion = [s for (variant, _), s in self.streaks.items() if variant == "champion"]
        streak = champion[0] if champion else {}
        start, reason = retrain_reason(
            streak, self.cfg, now, self.last_retrain, self.retrainer.running
        )
        decision: dict[str, Any] = {"started": start, "reason": reason}
        if start:
            try:
                decision["run"] = self.retrainer.start(reason)
            except VidrecError as exc:  # nothing started: no cooldown, the next run tries again
                self.metrics.retrains.labels("error").inc()
                log.error("retraining not started: %s", exc.message)
                return {**decision, "started": False, "error": exc.to_dict()}
            self.last_retrain = now
            # a Job a previous monitor process started and this one took up: not a new run
            adopted = bool(decision["run"].get("adopted"))
            self.metrics.retrains.labels("adopted" if adopted else "started").inc()
            log.warning("retraining%s: %s", " (taken up, started before)" * adopted, reason)
        elif reason != "no sustained drift":
            self.metrics.retrains.labels("skipped").inc()
        return decision

    def _log(self, event: dict[str, Any]) -> None:
        with self.events.open("a") as f:
            f.write(json.dumps(event, default=str, allow_nan=True) + "\n")

    def run(self, stop: threading.Event, runs: int | None = None) -> dict[str, Any]:
        """Run every `interval_s` until `stop` is set (or `runs` runs are done); how many
        runs ended how (ok, no_data, error) and the last error, if any."""
        results: Counter[str] = Counter()
        last_error = None
        while not stop.is_set() and (runs is None or results.total() < runs):
            started = self.clock()
            event = self.run_once()
            results[event["result"]] += 1
            last_error = event.get("error", last_error)
            stop.wait(max(0.0, self.cfg.interval_s - (self.clock() - started)))
        return {"runs": results.total(), "results": dict(results), "last_error": last_error}


def _columns(rows: Array, have: Sequence[str], names: list[str]) -> Array:
    """Columns `names` of `rows` (named `have`), missing as -1 like the KS test's."""
    x = np.asarray(rows, dtype=np.float64).reshape(-1, len(have))
    return with_missing(x[:, [have.index(n) for n in names]])


def summary(version: str, a: Assessment, streak: dict[str, int]) -> dict[str, Any]:
    tested = [f.p_value for f in a.features if math.isfinite(f.p_value)]
    return {
        "version": version,
        "status": a.status,
        "requests": round(a.requests, 1),
        "drifting": a.drifting,
        "prediction_drift": a.prediction_drifted,
        "prediction_p_value": a.prediction.p_value,
        "streaks": {k if k != SCORE else "predictions": v for k, v in streak.items() if v},
        "min_p_value": min(tested, default=None),
        "skipped": a.skipped,
        "tested_on_values": list(a.on_values),
        "reference_hours": list(a.reference_hours),
    }
