"""Business rules that turn ranked candidates into the slate a user sees. Pure functions.

In order: drop what the user already watched; cap videos per creator; give
`explore_slots` slots to fresh videos drawn uniformly from the fresh pool, at
uniformly drawn positions, logging the probability each was drawn (the
propensity later training and off-policy estimates divide by); fill the rest
with the ranking. Exploration is how a video nobody has seen gets its first
impressions, breaking the popularity feedback loop. The popularity fallback
goes through the same rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Source = Literal["ranked", "explore", "fallback"]


@dataclass(frozen=True)
class Candidate:
    video_id: int
    creator_id: int | None
    score: float


@dataclass(frozen=True)
class SlateItem:
    video_id: int
    score: float
    source: Source
    propensity: float  # P(this policy puts this video in the slate); 1.0 when deterministic


def _capped(
    items: Iterable[Candidate], excluded: set[int], creators: Counter[int], cap: int
) -> Iterable[Candidate]:
    for c in items:
        if c.video_id in excluded or (c.creator_id is not None and creators[c.creator_id] >= cap):
            continue
        yield c


def compose(
    ranked: Iterable[Candidate],  # best first; read only as far as the slate needs
    k: int,
    watched: Iterable[int] = (),
    fresh: Sequence[Candidate] = (),
    max_per_creator: int = 2,
    explore_slots: int = 0,
    rng: np.random.Generator | None = None,
    source: Source = "ranked",
) -> list[SlateItem]:
    excluded = set(watched)
    explore = _explore(fresh, excluded, min(explore_slots, k), rng)
    creators = Counter(c.creator_id for c in explore if c.creator_id is not None)
    taken = excluded | {c.video_id for c in explore}
    main: list[Candidate] = []
    for c in _capped(ranked, taken, creators, max_per_creator):
        if len(main) == k - len(explore):
            break
        main.append(c)
        taken.add(c.video_id)
        if c.creator_id is not None:
            creators[c.creator_id] += 1
    p = len(explore) / max(len([c for c in fresh if c.video_id not in excluded]), 1)
    return _interleave(
        [SlateItem(c.video_id, c.score, source, 1.0) for c in main],
        [SlateItem(c.video_id, c.score, "explore", p) for c in explore],
        rng,
    )


def _explore(
    fresh: Sequence[Candidate], excluded: set[int], n: int, rng: np.random.Generator | None
) -> list[Candidate]:
    """n fresh videos uniformly without replacement: each drawn with probability n/|pool|."""
    pool = [c for c in fresh if c.video_id not in excluded]
    n = min(n, len(pool))
    if rng is None or n == 0:
        return []
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _interleave(
    main: list[SlateItem], explore: list[SlateItem], rng: np.random.Generator | None
) -> list[SlateItem]:
    """Explore items at uniformly drawn positions of the final slate, main items in order."""
    if not explore or rng is None:
        return main
    n = len(main) + len(explore)
    slots = set(rng.choice(n, size=len(explore), replace=False).tolist())
    it_main, it_explore = iter(main), iter(explore)
    return [next(it_explore) if i in slots else next(it_main) for i in range(n)]
