"""How far the challenger's ranking is from the one the user was shown (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    overlap: float  # |served ∩ shadow| / |served|: overlap@k
    rank_correlation: float | None  # Kendall tau of the shared videos' ranks (None: < 2 shared)


def compare(served: list[int], shadow: list[int]) -> Comparison:
    in_shadow = set(shadow)
    shared = [v for v in served if v in in_shadow]
    overlap = len(shared) / len(served) if served else 1.0
    if len(shared) < 2:
        return Comparison(overlap, None)
    pos = {v: i for i, v in enumerate(shadow)}
    ranks = [pos[v] for v in shared]  # shadow ranks in served order
    n = len(ranks)
    concordant = sum(ranks[i] < ranks[j] for i in range(n) for j in range(i + 1, n))
    pairs = n * (n - 1) // 2
    return Comparison(overlap, (2 * concordant - pairs) / pairs)
