"""What a terminal is shown of a training run's summary (`vidrec train`, `evaluate`,
`pipeline run training`): a few lines and a table, instead of the nested dict `--json`
prints (about 120 lines pretty-printed). Pure: the summary in, lines out.
"""

from __future__ import annotations

from typing import Any

# the test-set slate metrics, as (summary key, column heading)
SLATE_COLUMNS = (
    ("ndcg10_true_slates", "nDCG@10 true"),
    ("ndcg10_clicks_slates", "nDCG@10 clicks"),
    ("ips_ctr_top1_slates", "IPS CTR@1"),
    ("ndcg20_true_candidates", "nDCG@20 true (candidates)"),
)


def render(s: dict[str, Any]) -> list[str]:
    """The run, its steps' times, the test metrics by model, the gates and the registry."""
    lines = [
        f"run {s.get('run_id', '?')}: {s.get('status', '?')} in {_num(s.get('seconds'))} s"
        f" ({s.get('executor', '?')} executor; {s.get('run_dir', '?')})",
        "steps: " + ", ".join(f"{k} {_num(v)} s" for k, v in s.get("step_seconds", {}).items()),
    ]
    if "test" in s:
        lines += _slates(s["test"], s.get("chosen"))
        lines += _recall(s["test"].get("recall500", {}))
        lines.append(f"report: {s.get('report')}  plot: {s.get('plot')}")
    if "gates" in s:
        lines += _gates(s["gates"])
    if "registered" in s:
        lines.append(_registered(s))
    return lines


def _slates(test: dict[str, Any], chosen: str | None) -> list[str]:
    """A row per model with each test metric it has; the chosen ranker is starred."""
    cols = [(key, head) for key, head in SLATE_COLUMNS if test.get(key)]
    models = list(dict.fromkeys(m for key, _ in cols for m in test[key]))
    width = max([len(m) + 2 for m in models] + [len("model")])
    head = "model".ljust(width) + "".join(f"  {h}" for _, h in cols)
    rows = [
        f"{m}{' *' if m == chosen else ''}".ljust(width)
        + "".join(f"  {_num(test[key].get(m), 4):>{len(h)}}" for key, h in cols)
        for m in models
    ]
    note = f" (* the chosen ranker: {chosen})" if chosen else ""
    return [f"test set{note}:", "  " + head, *("  " + r for r in rows)]


def _recall(recall: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"recall@500 {name}: "
        + ", ".join(f"{k.removeprefix('recall500_')} {_num(v, 4)}" for k, v in r.items())
        for name, r in recall.items()
    ]


def _gates(gates: list[dict[str, Any]]) -> list[str]:
    passed = sum(bool(g["passed"]) for g in gates)
    return [f"gates: {passed} of {len(gates)} passed"] + [
        f"  {'passed' if g['passed'] else 'FAILED'} {g['name']}: {g['message']}" for g in gates
    ]


def _registered(s: dict[str, Any]) -> str:
    if not s["registered"]:
        return "not registered: a gate failed"
    return f"registered v{s.get('version')} as {s.get('alias')} ({s.get('bundle')})"


def _num(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)
