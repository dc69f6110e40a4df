"""The newest pipeline run, as Prometheus metrics (`vidrec_pipeline_*`).

Pipelines are batch jobs (a CronJob, the monitor's retraining, `make demo`): nothing
is left running to scrape. Each run already rewrites `run.json` after every step, so
a long-lived process (the drift monitor) reads the newest record per pipeline at
scrape time and exports when it ran, how it ended, how long each step took, the
offline metrics and each gate's result. Records are read again only when they change.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# run.json itself, a run directory below a root, or a retraining's run/ below that
PATTERNS = ("run.json", "*/run.json", "*/*/run.json")
STATUSES = ("running", "ok", "failed")


def find_runs(roots: Iterable[Path]) -> list[Path]:
    """Every run record under the roots, shallow (a root may be a whole output tree)."""
    found = {p for root in roots for pattern in PATTERNS for p in root.glob(pattern)}
    return sorted(found)


def newest_per_pipeline(records: Iterable[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """pipeline name -> its newest record (by mtime), each with `ended_at` set to it."""
    newest: dict[str, tuple[float, dict[str, Any]]] = {}
    for mtime, rec in records:
        name = str(rec.get("pipeline", "unknown"))
        if name not in newest or mtime > newest[name][0]:
            newest[name] = (mtime, rec)
    return {name: {**rec, "ended_at": mtime} for name, (mtime, rec) in newest.items()}


def _outputs(rec: dict[str, Any], step: str) -> dict[str, Any]:
    found = next((s for s in rec.get("steps", ()) if s.get("name") == step), None)
    out = (found or {}).get("outputs")
    return out if isinstance(out, dict) else {}


def _number(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def offline_metrics(rec: dict[str, Any]) -> Iterator[tuple[str, str, str, float]]:
    """(table, model, metric, value) from the evaluate step's test results."""
    test = _outputs(rec, "evaluate").get("test") or {}
    for table in ("slates", "retrieval"):
        for model, metrics in (test.get(table) or {}).items():
            for metric, value in (metrics or {}).items():
                if (v := _number(value)) is not None:
                    yield table, str(model), str(metric), v


def gates(rec: dict[str, Any]) -> list[dict[str, Any]]:
    report = _outputs(rec, "gate").get("gate_report") or {}
    return [g for g in report.get("gates", ()) if isinstance(g, dict) and "name" in g]


class PipelineCollector(Collector):
    """Exports the newest run of each pipeline found under `roots` on every scrape."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = [Path(r) for r in roots]
        self._cache: dict[Path, tuple[float, dict[str, Any]]] = {}

    def _read(self, path: Path) -> tuple[float, dict[str, Any]] | None:
        try:
            mtime = path.stat().st_mtime
            cached = self._cache.get(path)
            if cached is None or cached[0] != mtime:
                cached = self._cache[path] = (mtime, json.loads(path.read_text()))
            return cached
        except (OSError, json.JSONDecodeError) as exc:
            # a run being replaced, or a stray file: the next scrape reads it again
            log.warning("pipeline record %s unreadable: %s", path, exc)
            return None

    def latest(self) -> dict[str, Any]:
        records = [r for p in find_runs(self.roots) if (r := self._read(p)) is not None]
        return newest_per_pipeline(records)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(families(self.latest()))


def families(latest: dict[str, Any]) -> list[GaugeMetricFamily]:
    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"vidrec_pipeline_{name}", doc, labels=["pipeline", *labels])

    ended = gauge("last_run_timestamp_seconds", "When the newest run last wrote its record", [])
    status = gauge("last_run_status", "1 for the newest run's status", ["status"])
    took = gauge("last_run_duration_seconds", "Wall time of the newest run", [])
    step_s = gauge("step_duration_seconds", "Wall time of each step of the newest run", ["step"])
    offline = gauge("offline_metric", "Test-window offline metrics", ["table", "model", "metric"])
    passed = gauge("gate_passed", "1 if the gate passed in the newest run", ["gate"])
    value = gauge("gate_value", "What the gate measured", ["gate"])
    limit = gauge("gate_threshold", "The gate's threshold", ["gate"])
    version = gauge("registered_version", "Registry version the newest run registered", [])
    for name, rec in sorted(latest.items()):
        ended.add_metric([name], rec["ended_at"])
        for s in STATUSES:
            status.add_metric([name, s], float(rec.get("status") == s))
        if (v := _number(rec.get("seconds"))) is not None:
            took.add_metric([name], v)
        for step in rec.get("steps", ()):
            if (v := _number(step.get("seconds"))) is not None:
                step_s.add_metric([name, str(step.get("name"))], v)
        for table, model, metric, v in offline_metrics(rec):
            offline.add_metric([name, table, model, metric], v)
        for g in gates(rec):
            passed.add_metric([name, g["name"]], float(bool(g.get("passed"))))
            for family, key in ((value, "value"), (limit, "threshold")):
                if (v := _number(g.get(key))) is not None:
                    family.add_metric([name, g["name"]], v)
        if (v := _number(_outputs(rec, "register").get("version"))) is not None:
            version.add_metric([name], v)
    return [ended, status, took, step_s, offline, passed, value, limit, version]
