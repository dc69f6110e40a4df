"""What `make demo` decides and prints: the checks behind its exit code, and a line per
step (pure). The whole summary goes to `<out>/summary.json` and to `vidrec demo --json`;
a terminal gets the lines, not several hundred of nested fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Steps = dict[str, Any]

# what the demo shows, each a check on its steps' summary: the exit code is 1 unless all hold
CHECKS: dict[str, tuple[str, Callable[[Steps], bool]]] = {
    "skew_check": ("online and offline feature vectors are equal",
                   lambda s: s["skew_check"]["passed"]),
    "leakage_guard": ("the leaky feature is refused", lambda s: s["leakage_guard"]["rejected"]),
    "train": ("the champion is registered", lambda s: s["train"]["registered"]),
    "monitoring.quiet": ("no drift flagged in the normal windows",
                         lambda s: s["monitoring"]["normal_quiet"]),
    "monitoring.drift": ("drift flagged in the new-market windows",
                         lambda s: s["monitoring"]["drift_detected"]),
    "monitoring.alert": ("VidrecFeatureDrift fired",
                         lambda s: "VidrecFeatureDrift" in s["monitoring"]["alerts_firing"]),
    "rollout": ("the good challenger promoted, the bad one rolled back, no request failed",
                lambda s: s["rollout"].get("ok", False)),
}  # fmt: skip


def failed(steps: Steps) -> list[str]:
    """The checks that do not hold (a step missing from `steps` fails its checks)."""
    out = []
    for name, (_, holds) in CHECKS.items():
        try:
            ok = bool(holds(steps))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            out.append(name)
    return out


def render(summary: dict[str, Any]) -> list[str]:
    """A line per step, then the verdict."""
    s: Steps = summary["steps"]
    lines = [f"{'steps.' + name:<21}{text}" for name, text in _steps(s)]
    if summary["ok"]:
        lines.append(f"demo passed in {summary['seconds']:.0f} s")
    else:
        lines.append(f"demo FAILED in {summary['seconds']:.0f} s:")
        lines += [f"  {name}: expected {CHECKS[name][0]}" for name in summary["failed"]]
    lines.append(f"full summary: {summary['summary']}")
    return lines


def _steps(s: Steps) -> list[tuple[str, str]]:
    """The steps that ran, in the demo's order, each with its line."""
    return [(name, line(s[name])) for name, line in LINES.items() if name in s]


def _simulate(x: dict[str, Any]) -> str:
    c = x["counts"]
    return (f"{c['impressions']:,} impressions from {c['users']:,} users and "
            f"{c['videos']:,} videos ({x['seconds']:.0f} s)")  # fmt: skip


def _features(f: dict[str, Any]) -> str:
    return (f"{f['rows']:,} training rows, {f['rejected_total']:,} rejected, "
            f"{f['label_pending']:,} label-pending ({f['seconds']:.0f} s)")  # fmt: skip


def _skew(k: dict[str, Any]) -> str:
    verdict = "passed" if k["passed"] else "FAILED"
    return f"max_abs_diff {k['max_abs_diff']} over {k['rows']:,} logged impressions: {verdict}"


def _leakage(g: dict[str, Any]) -> str:
    return "rejected: " + ", ".join(g["features"] or []) if g["rejected"] else "NOT rejected"


def _online_store(o: dict[str, Any]) -> str:
    return f"{o['store']}; settings {o['settings']} (for make serve)"


def _train(t: dict[str, Any]) -> str:
    if not t["registered"]:
        return "nothing registered (a gate failed)"
    gates = "all gates passed" if t["gates_passed"] else "gates FAILED"
    return f"registered version {t['version']} as {t['alias']} ({gates}); report {t['report']}"


def _monitoring(m: dict[str, Any]) -> str:
    alerts = ", ".join(m["alerts_firing"]) or "none"
    r = m["retraining"]
    retrained = (f"version {r['version']} registered as {r['alias']}"
                 if r.get("result") == "registered" else str(r.get("result")))  # fmt: skip
    text = (f"windows {', '.join(map(str, m['windows']))}; "
            f"{len(m['drifting_features'])} features drift; alerts firing: {alerts}; "
            f"retraining: {retrained}")  # fmt: skip
    if "dashboards" in m:
        empty = sorted({p for d in m["dashboards"].values() for p in d.get("empty", [])})
        text += f"; {len(m['dashboards'])} dashboards drawn"
        text += f" (panels without data: {', '.join(empty)})" if empty else ""
    return text


def _rollout(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    return f"{_release(r['good'])}; {_release(r['bad'])}"


def _release(x: dict[str, Any]) -> str:
    text = f"v{x['version']} {x['phase'].replace('_', ' ')}"
    if x.get("phases"):
        text += f" after {x['phases'][-1]['t_s']:.0f} s"
    if x.get("timed_out"):
        text += " (the controller did not end it in time)"
    if x.get("failed_checks"):
        text += f" (failed: {', '.join(x['failed_checks'])}"
        reaction = x.get("first_failure_to_rollback_s")
        text += f"; {reaction:.0f} s from the first failing check)" if reaction is not None else ")"
    return (f"{text}, {100 * x['exposure']:.1f} % of users exposed, "
            f"{x['failed_requests']} failed requests")  # fmt: skip


LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "simulate": _simulate,
    "features": _features,
    "skew_check": _skew,
    "leakage_guard": _leakage,
    "train": _train,
    "online_store": _online_store,
    "monitoring": _monitoring,
    "rollout": _rollout,
}
