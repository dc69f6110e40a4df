"""`vidrec bench serve`'s report as the README's table (pure): `serve.md` beside
`serve.json`, and what a terminal is shown instead of the whole report.

(a') is a stock Ray Serve no-op app over Ray's own HTTP proxy, the issue's reference
floor. A cell is p50 / p99 ms (achieved req/s, and requests that got no answer if any:
its percentiles are of the answered ones) · the machine's CPU ms per request; the
in-process column has no achieved rate (its calls are paced, not sent). The
endpoint's cell at the top rate, where the verdict is read, is bold.
"""

from __future__ import annotations

from typing import Any

from vidrec.bench.load import failed

Run = dict[str, Any]


def table(report: dict[str, Any]) -> list[str]:
    """The markdown table: a row per catalogue size and rate."""
    replicas = report.get("replicas", {}).get("replicas", "other")
    lines = [
        "| items | rate | (a) no-op | (a') stock Ray Serve no-op | (b) vidrec endpoint | "
        f"(b) unbatched | {replicas} replica{'s' if replicas != 1 else ''} | (c) in-process | "
        "split topology |",
        "| --- | ---: | --- | --- | --- | --- | --- | --- | --- |",
    ]
    top = key(max(report["rates"]))
    # the unbatched, replicas and split runs are of the first catalogue size alone
    first = next(iter(report["sizes"]), None)
    for n, size in report["sizes"].items():
        for rate in report["rates"]:
            k = key(rate)
            alone = n == first
            endpoint = _cell(size["endpoint"].get(k))
            row = [
                _items(int(n)),
                k,
                _cell(size["noop"].get(k)),
                _cell(size.get("stock_noop", {}).get(k)),
                f"**{endpoint}**" if k == top and endpoint else endpoint,
                _cell(_run(report, "unbatched", k)) if alone else "",
                _cell(_run(report, "replicas", k)) if alone else "",
                _cell(size["in_process"].get(k), sent=False),
                _cell(_run(report, "split", k)) if alone else "",
            ]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def verdict_lines(verdict: dict[str, Any]) -> list[str]:
    """The targets at the top rate, a line each."""
    out = []
    for n, v in verdict.items():
        if isinstance(v, dict):
            stock = v.get("p50_vs_stock_noop")  # reports before (a') have none
            also = f"; {stock}x the stock Ray Serve no-op's" if stock is not None else ""
            if v.get("stock_noop_failed"):
                also = f"; the stock Ray Serve no-op lost {v['stock_noop_failed']} requests"
            out.append(f"{_items(int(n))} at {verdict['rate']} req/s: p50 {v['p50_vs_noop']}x "
                       f"the no-op's ({_met(v['p50_vs_noop_ok'])}{also}), p99 {v['p99_ms']} ms "
                       f"({_met(v['p99_ok'])}), {v['errors']} errors")  # fmt: skip
    rise = verdict.get("shadow_p99_rise")
    if rise is not None:
        out.append(f"shadow at 100 %: champion p99 {100 * rise:+.0f} % "
                   f"({_met(verdict['shadow_ok'])})")  # fmt: skip
    return out


def _run(report: dict[str, Any], section: str, k: str) -> Run | None:
    result: Run | None = report.get(section, {}).get("endpoint", {}).get(k)
    return result


def _cell(run: Run | None, sent: bool = True) -> str:
    if not run or run.get("p50_ms") is None:
        return ""
    text = f"{run['p50_ms']:.1f} / {run['p99_ms']:.1f}"
    if sent:
        lost = failed(run)
        text += f" ({run['achieved_rps']:.0f}{f', {lost} lost' if lost else ''})"
    return f"{text} · {run['cpu_ms_per_request']:.0f}"


def _items(n: int) -> str:
    return f"{n // 10**6}M" if n >= 10**6 else f"{n // 1000}k"


def key(rate: float) -> str:
    """A rate as a JSON object key: 25.0 -> "25"."""
    return f"{rate:g}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"
