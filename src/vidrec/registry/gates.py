"""Registration gates: may this candidate model be registered at all?

Pure decisions over numbers already measured on the validation window, so every
outcome is unit-testable and reproducible from the report alone. No I/O here.
A missing or non-finite measurement fails its gate with a message naming it:
no data is never a pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vidrec.config import GateConfig
from vidrec.errors import VidrecError

# float sums like 0.705 + 0.001 miss the exact boundary by ~1e-16; that is not a loss
_EPS = 1e-12


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float | str | None  # what was measured (None when it could not be)
    threshold: float | str | None  # what it had to reach or equal
    message: str


@dataclass(frozen=True)
class GateReport:
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "gates": [asdict(r) for r in self.results]}


class GateFailed(VidrecError):
    """The candidate failed a registration gate, so nothing was registered (422)."""

    http_status = 422
    code = "gate_failed"

    def __init__(self, report: GateReport) -> None:
        failed = report.failed()
        why = "; ".join(f"{r.name}: {r.message}" for r in failed)
        super().__init__(
            f"model not registered: {len(failed)} gate(s) failed: {why}", report=report.to_dict()
        )
        self.report = report


def check_gates(
    cfg: GateConfig,
    candidate_metrics: dict[str, float],
    baseline_metrics: dict[str, dict[str, float]],
    champion_metrics: dict[str, float] | None,
    nonfinite_scores: int,
    schema_hash: str,
    serving_schema_hash: str,
) -> GateReport:
    """Every gate, in order: finite_scores, schema, beats_<baseline>..., beats_champion."""
    results = [
        _finite_scores(nonfinite_scores),
        _schema(schema_hash, serving_schema_hash),
        *(
            _beats(
                cfg.metric,
                candidate_metrics,
                b,
                baseline_metrics.get(b),
                cfg.min_gain_over_baselines,
            )
            for b in cfg.baselines
        ),
        _beats_champion(cfg, candidate_metrics, champion_metrics),
    ]
    return GateReport(tuple(results))


def _finite_scores(n: int) -> GateResult:
    msg = (
        "every validation score is finite"
        if n == 0
        else f"{n} validation score(s) are NaN or infinite; none are allowed"
    )
    return GateResult("finite_scores", n == 0, n, 0, msg)


def _schema(candidate: str, serving: str) -> GateResult:
    same = candidate == serving
    how = "matches" if same else "differs from"
    return GateResult(
        "schema", same, candidate, serving, f"schema_hash {candidate} {how} serving {serving}"
    )


def _beats_champion(
    cfg: GateConfig, candidate: dict[str, float], champion: dict[str, float] | None
) -> GateResult:
    if champion is None:
        value = _finite_or_none(candidate.get(cfg.metric))
        return GateResult("beats_champion", True, value, None, "no champion yet")
    return _beats(cfg.metric, candidate, "champion", champion, cfg.min_gain_over_champion)


def _beats(
    metric: str,
    candidate: dict[str, float],
    other: str,
    other_metrics: dict[str, float] | None,
    margin: float,
) -> GateResult:
    """candidate[metric] >= other[metric] + margin, or a failure saying what was missing."""
    name = f"beats_{other}"
    value = candidate.get(metric)
    ref = None if other_metrics is None else other_metrics.get(metric)
    missing = _missing(metric, value, candidate, other, ref, other_metrics)
    if missing:
        return GateResult(name, False, _finite_or_none(value), None, missing)
    assert value is not None and ref is not None  # _missing checked both
    threshold = ref + margin
    gap = value - threshold
    passed = gap >= -_EPS
    shown, side = (max(gap, 0.0), "above") if passed else (-gap, "below")
    msg = f"{metric} {_num(value)} is {_num(shown)} {side} {other} {_num(ref)} {_margin(margin)}"
    return GateResult(name, passed, value, threshold, msg)


def _missing(
    metric: str,
    value: float | None,
    candidate: dict[str, float],
    other: str,
    ref: float | None,
    other_metrics: dict[str, float] | None,
) -> str | None:
    if value is None:
        return f"candidate metrics lack {metric!r} (have: {', '.join(sorted(candidate)) or 'none'})"
    if other_metrics is None:
        return f"no metrics for {other}"
    if ref is None:
        return f"{other} metrics lack {metric!r}"
    if not (math.isfinite(value) and math.isfinite(ref)):
        return f"{metric} is not finite: candidate {value}, {other} {ref}"
    return None


def _finite_or_none(x: float | None) -> float | None:
    # keeps GateReport.to_dict() strict JSON (no NaN literals)
    return x if x is not None and math.isfinite(x) else None


def _num(x: float) -> str:
    return f"{x:.3f}" if x == 0 or abs(x) >= 5e-4 else f"{x:.1e}"


def _margin(m: float) -> str:
    return f"+ margin {_num(m)}" if m >= 0 else f"- tolerance {_num(-m)}"
