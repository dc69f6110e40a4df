"""`vidrec bench features`'s report as the README's table (pure): `features.md` beside
`features.json`, and what a terminal is shown instead of the whole report."""

from __future__ import annotations

from typing import Any


def table(report: dict[str, Any]) -> list[str]:
    """The markdown table: a row per scale."""
    results = report["results"]
    samples = {r["naive_rows"] for r in results}
    # one sample size for every scale goes in the header, else beside each rate
    sample = f" ({samples.pop():,}-row sample)" if len(samples) == 1 else ""
    lines = [
        "| scale | impressions | training rows | PIT join rows/s | peak RSS | "
        f"naive pandas rows/s{sample} | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        naive = f"{r['naive_rows_per_s']:,}" + ("" if sample else f" ({r['naive_rows']:,} rows)")
        lines.append(f"| {r['scale']} | {r['input_impressions']:,} | {r['rows']:,} | "
                     f"{r['pit_rows_per_s']:,} ({duration(r['pit_seconds'])}) | "
                     f"{r['pit_peak_rss_mb'] / 1024:.1f} GB | {naive} | "
                     f"{r['speedup_vs_naive']:,.0f}x |")  # fmt: skip
    return lines


def lines(report: dict[str, Any]) -> list[str]:
    """A terminal's view: the table, how far the two joins agree, and the files."""
    worst = max(r["naive_vs_engine_max_abs_diff"] for r in report["results"])
    return [*table(report), "",
            f"on the sampled rows the naive join and the engine agree to {worst:.3g} "
            "(largest absolute difference of any feature)", "",
            f"table {report['table']}, plot {report['plot']}"]  # fmt: skip


def duration(seconds: float) -> str:
    """25.3 -> "25 s", 660 -> "11 min"."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
