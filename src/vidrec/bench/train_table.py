"""`vidrec bench train`'s report as the README's tables (pure): `train.md` beside
`train.json`, and what a terminal is shown instead of the whole report.

Each part of the report that ran gets its block: the pipeline's step times, the
ANN by catalogue size (IVF at the default `nprobe` against exact search), and the
ranker's scoring line.
"""

from __future__ import annotations

from typing import Any

# what each training step does, for a reader of the table (the times are the report's)
STEPS = {
    "build_dataset": "PIT training set",
    "train_retrieval": "two-tower, CPU",
    "build_index": "IVF over the catalogue",
    "train_ranker": "popularity, logistic, LightGBM naive + IPW",
    "fetch_champion": "the registry's champion, for the gates",
    "evaluate": "validation and test slates",
}


def table(report: dict[str, Any]) -> list[str]:
    """The markdown: a block per part of the report, blank lines between them."""
    blocks = []
    if "pipeline" in report:
        blocks.append(pipeline_table(report["pipeline"]))
    if "ann" in report:
        blocks.append(ann_table(report["ann"]))
    if "ranker_scoring" in report:
        blocks.append([scoring_line(report["ranker_scoring"])])
    return [line for i, b in enumerate(blocks) for line in ([""] if i else []) + b]


def pipeline_table(p: dict[str, Any]) -> list[str]:
    lines = [f"| pipeline step ({p['scale']} scale) | seconds |", "| --- | ---: |"]
    for name, seconds in p["step_seconds"].items():
        what = f" ({STEPS[name]})" if name in STEPS else ""
        lines.append(f"| {name}{what} | {_seconds(seconds)} |")
    return [*lines, f"| total | {_seconds(p.get('total_seconds'))} |"]


def ann_table(ann: dict[str, Any]) -> list[str]:
    k = ann["config"]["k"]
    lines = [
        "| items | IVF build (train + add) | IVF lists scanned | IVF p50 / p99 | "
        f"recall@{k} vs exact | exact p50 / p99 | items added after training, found |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in ann["results"]:
        ivf = next(x for x in r["ivf"] if x["nprobe"] == r["default_nprobe"])
        added = r["add_without_retrain"]
        found = round(added["found_rate"] * added["items"])
        lines.append(f"| {r['items']:,} | {r['train_seconds']:.1f} s + {r['add_seconds']:.1f} s | "
                     f"{ivf['effective_nprobe']:,} of {r['nlist']:,} | {_ms(ivf)} | "
                     f"{ivf['recall_at_k']:.3f} | {_ms(r['exact'])} | "
                     f"{found:,} of {added['items']:,} |")  # fmt: skip
    return lines


def scoring_line(s: dict[str, Any]) -> str:
    m = s["model"]
    compiled = (f"lleaves {_ms(s['lleaves'])} ({s['compile_seconds']:.0f} s cold compile, "
                f"{s['cached_load_seconds']:.2f} s from the cache)")  # fmt: skip
    return (
        f"Ranker scoring, one request's {s['candidates']} candidates ({m['trees']} trees, "
        f"{m['features']} features): LightGBM {_ms(s['lightgbm'])}, {compiled}, "
        f"**{s['speedup_p50']:.1f}x faster at p50**, scores equal to "
        f"{s['max_abs_diff']:.1e}{'' if s['equal_to_1e-6'] else ' (NOT within 1e-6)'}."
    )


def lines(report: dict[str, Any]) -> list[str]:
    """A terminal's view: the tables and the files."""
    return [*table(report), "", f"table {report['table']}, plot {report['plot']}"]


def _ms(r: dict[str, Any]) -> str:
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms"


def _seconds(s: float | None) -> str:
    return "" if s is None else f"{s:.1f}"
