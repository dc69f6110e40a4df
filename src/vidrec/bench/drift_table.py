"""`vidrec bench drift`'s report as the README's table (pure): `drift.md` beside
`drift.json`, and what a terminal is shown instead of the whole report.

A column per signal (the binned detectors, samples mode, the CTR drop rule). The
first row pools every quiet window (the `none` scenario's, and the others' before
onset) into a false alarm rate with its one-sided 95 % upper bound; then a row per
scenario with a change: each platform's detection delay in windows ("not seen":
never flagged) and, for the detectors, the share of later windows that flag and the
feature flagging most often. A cell that meets its target is bold. A scenario the
monitor is not meant to catch (`WATCHED`) says which features flagged instead.
"""

from __future__ import annotations

from typing import Any

SIGNALS = (("drift", "binned (default)"), ("samples_mode", "samples mode"),
           ("ctr_drop", "CTR drop (`VidrecCTRDrop`)"))  # fmt: skip
# new uploads of already-known kinds: the catalogue's features are capped, so little should move
WATCHED = {"catalog-surge"}


def table(report: dict[str, Any]) -> list[str]:
    """The markdown table: the pooled quiet windows, then a row per scenario with a change."""
    targets = report["targets"]
    most, delay = targets["false_alarm_rate_max"], targets["detection_delay_windows_max"]
    lines = ["| scenario | target | " + " | ".join(label for _, label in SIGNALS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in SIGNALS) + " |"]  # fmt: skip
    pooled = report["false_alarms_pooled"]
    lines.append(_row("all quiet windows", f"false alarms <= {_pct(most)} of windows",
                      [_false_alarms(pooled[s], most) for s, _ in SIGNALS]))  # fmt: skip
    for name, r in report["scenarios"].items():
        if name == "none":
            continue
        if name in WATCHED:
            cells = [_flagged(r if s == "drift" else r[s], features=s != "ctr_drop")
                     for s, _ in SIGNALS]  # fmt: skip
            lines.append(_row(name, "which features flag", cells))
            continue
        cells = [_detection(r if s == "drift" else r[s], delay, features=s != "ctr_drop")
                 for s, _ in SIGNALS]  # fmt: skip
        lines.append(_row(name, f"detection delay <= {delay} windows", cells))
    return lines


def lines(report: dict[str, Any]) -> list[str]:
    """A terminal's view: the table, the run's time and the files."""
    return [*table(report), "",
            f"{report['seconds']:.0f} s; report {report['report']}, table {report['table']}, "
            f"plot {report['plot']}"]  # fmt: skip


def _row(name: str, target: str, cells: list[str]) -> str:
    return "| " + " | ".join([name, target, *cells]) + " |"


def _false_alarms(p: dict[str, Any], most: float) -> str:
    if not p["quiet_windows"]:
        return "no quiet window"
    rate = _bold(_pct(p["false_alarm_rate"]), p["false_alarm_rate"] <= most)
    return (f"{rate} ({p['false_alarm_windows']} of {p['quiet_windows']}; "
            f"upper 95 %: {_pct(p['rate_upper_95'])})")  # fmt: skip


def _detection(x: dict[str, Any], most: int, features: bool) -> str:
    delays = x["detection_delays"]
    if not delays:
        return "no platform"
    met = all(d is not None and d <= most for d in delays)
    text = _bold(_delays(delays), met)
    share = x["detected_share_after_onset"]
    if features and share is not None:
        text += f"; {_pct(share)} of later windows flag"
        top = next(iter(x["features_flagged_after_onset"]), None)  # most often first
        text += f" ({top})" if top else ""
    return text


def _flagged(x: dict[str, Any], features: bool) -> str:
    """What flagged after onset: the features, most often first (the CTR rule: its delays)."""
    if features:
        flagged = x["features_flagged_after_onset"]
        return ", ".join(f"{f} ({n})" for f, n in flagged.items()) if flagged else "none"
    delays = x["detection_delays"]
    return _delays(delays) if any(d is not None for d in delays) else "none"


def _delays(delays: list[int | None]) -> str:
    """Each platform's delay in windows; "not seen" where it never flagged."""
    return ", ".join("not seen" if d is None else str(d) for d in delays)


def _pct(x: float) -> str:
    """0.0025 -> "0.25 %", 0.012 -> "1.2 %", 0.963 -> "96 %"."""
    v = 100 * x
    return f"{v:.0f} %" if v >= 10 else f"{v:.2g} %"


def _bold(text: str, met: bool) -> str:
    return f"**{text}**" if met else text
