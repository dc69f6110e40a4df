"""PNG previews of the dashboards, drawn from the same queries a Prometheus answers.

No Grafana runs here, so each panel is evaluated with `query_range` and drawn with
matplotlib: time series as lines, stats as their last values, bar gauges as bars. The
summary counts each panel's series and finite points; a panel with none is listed as
empty, which the integration test turns into a failure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidrec.deploy.dashboards import DASHBOARDS, Dashboard, Panel, expr
from vidrec.monitoring.prometheus import PrometheusProvider, Series

_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Drawn:
    """One panel's evaluated queries: (legend, series) pairs."""

    panel: Panel
    lines: list[tuple[str, Series]]

    @property
    def points(self) -> int:
        return sum(1 for _, s in self.lines for _, v in s.points if math.isfinite(v))


def legend(fmt: str, labels: dict[str, str]) -> str:
    return _LABEL.sub(lambda m: labels.get(m.group(1), ""), fmt).strip()


def evaluate(
    d: Dashboard, prom: PrometheusProvider, start: float, end: float, step_s: float, window: str
) -> list[Drawn]:
    return [
        Drawn(
            p,
            [
                (legend(q.legend, s.labels), s)
                for q in p.queries
                for s in prom.query_range(expr(q, window), start, end, step_s)
            ],
        )
        for p in d.panels
    ]


def summary(drawn: list[Drawn]) -> dict[str, Any]:
    panels = {x.panel.title: {"series": len(x.lines), "points": x.points} for x in drawn}
    return {"panels": panels, "empty": [t for t, v in panels.items() if v["points"] == 0]}


def current(lines: list[tuple[str, Series]]) -> list[tuple[str, float]]:
    """What a stat shows: each series' value at the newest time any series has (a series
    that ended earlier, such as a run's previous status, is not current)."""
    last = {
        name: pts[-1] for name, s in lines if (pts := [p for p in s.points if math.isfinite(p[1])])
    }
    end = max((t for t, _ in last.values()), default=None)
    return [(name[:40], v) for name, (t, v) in last.items() if t == end]


def _draw(ax: Any, x: Drawn, start: float) -> None:
    p = x.panel
    ax.set_title(p.title, fontsize=10, loc="left")
    if x.points == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color="grey")
        ax.set_xticks([]), ax.set_yticks([])
        return
    if p.kind == "timeseries":
        for name, s in x.lines:
            ax.plot(
                [(t - start) / 60 for t, _ in s.points],
                [v for _, v in s.points],
                label=name[:40],
                linewidth=1.2,
            )
        if p.threshold is not None:
            ax.axhline(p.threshold, color="red", linestyle="--", linewidth=1)
        ax.set_xlabel("minutes", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    else:
        last = current(x.lines)
        if p.kind == "bargauge":
            ax.barh([n for n, _ in last], [v for _, v in last], color="tab:blue")
            ax.tick_params(axis="y", labelsize=7)
        else:
            text = "\n".join(f"{n}: {v:.4g}" for n, v in last[:4])
            ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=13)
            ax.set_xticks([]), ax.set_yticks([])
    ax.tick_params(labelsize=7)
    if p.unit != "short" and p.kind == "timeseries":
        ax.set_ylabel(p.unit, fontsize=8)


def plot(d: Dashboard, drawn: list[Drawn], start: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(drawn) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), squeeze=False)
    for ax, x in zip(axes.flat, drawn, strict=False):
        _draw(ax, x, start)
    for ax in list(axes.flat)[len(drawn) :]:
        ax.set_visible(False)
    fig.suptitle(d.title, fontsize=14, x=0.01, ha="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def overview(rendered: dict[str, Any]) -> dict[str, Any]:
    """Per dashboard, its PNG and the panels without data (what a summary line shows)."""
    return {uid: {"png": d["png"], "empty": d["empty"]} for uid, d in rendered.items()}


def render(
    prom_url: str, out: Path, start: float, end: float, window: str = "1m"
) -> dict[str, Any]:
    """Every dashboard as `<out>/<uid>.png`; {uid: {png, panels, empty}}."""
    prom = PrometheusProvider(prom_url, timeout_s=30)
    step = max(1.0, (end - start) / 300)  # about 300 points a line, like Grafana's default
    result = {}
    for d in DASHBOARDS:
        drawn = evaluate(d, prom, start, end, step, window)
        png = plot(d, drawn, start, out / f"{d.uid}.png")
        result[d.uid] = {"png": str(png), **summary(drawn)}
    return result
