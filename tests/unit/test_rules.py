"""Business rules: watched videos never return, creators are capped, exploration slots are
uniform over fresh videos with the propensity logged, the ranking fills the rest in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np

from vidrec.serving.recommender import Ranked, best_first
from vidrec.serving.rules import Candidate, compose


def cands(n: int, creators: int = 100, start: int = 0) -> list[Candidate]:
    return [Candidate(start + i, (start + i) % creators, 1.0 - i / n) for i in range(n)]


def test_watched_videos_are_dropped_and_order_is_kept() -> None:
    slate = compose(cands(20), k=5, watched=[0, 2])
    assert [s.video_id for s in slate] == [1, 3, 4, 5, 6]
    assert all(s.source == "ranked" and s.propensity == 1.0 for s in slate)


def test_at_most_n_videos_per_creator() -> None:
    ranked = cands(30, creators=3)  # creators repeat every 3 videos
    slate = compose(ranked, k=10, max_per_creator=2)
    by_creator = Counter(ranked[s.video_id].creator_id for s in slate)
    assert max(by_creator.values()) <= 2 and len(slate) == 6  # 3 creators x 2: fewer than k


def test_exploration_is_uniform_over_fresh_videos_with_its_propensity() -> None:
    rng = np.random.default_rng(0)
    fresh = cands(4, start=1000)
    seen: Counter[int] = Counter()
    positions: Counter[int] = Counter()
    for _ in range(4000):
        slate = compose(cands(50), k=10, fresh=fresh, explore_slots=1, rng=rng)
        assert len(slate) == 10
        ex = [i for i, s in enumerate(slate) if s.source == "explore"]
        assert len(ex) == 1 and slate[ex[0]].propensity == 0.25
        seen[slate[ex[0]].video_id] += 1
        positions[ex[0]] += 1
        main = [s.video_id for s in slate if s.source == "ranked"]
        assert main == sorted(main)  # the ranking keeps its order around the explore slot
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in seen.values())
    assert len(positions) == 10 and all(abs(c / 4000 - 0.1) < 0.02 for c in positions.values())


def test_explored_videos_are_not_repeated_nor_watched() -> None:
    rng = np.random.default_rng(1)
    fresh = cands(3, start=0)  # overlaps the ranking on purpose
    for _ in range(200):
        slate = compose(cands(20), k=8, watched=[1], fresh=fresh, explore_slots=2, rng=rng)
        ids = [s.video_id for s in slate]
        assert len(ids) == len(set(ids)) and 1 not in ids
        ex = [s for s in slate if s.source == "explore"]
        assert len(ex) == 2 and all(s.propensity == 1.0 for s in ex)  # 2 of the 2 unwatched


def test_no_fresh_videos_or_no_rng_means_no_exploration() -> None:
    assert all(s.source == "ranked" for s in compose(cands(20), k=5, explore_slots=2))
    rng = np.random.default_rng(0)
    assert len(compose(cands(20), k=5, explore_slots=2, rng=rng)) == 5


def test_compose_reads_the_candidates_only_as_far_as_the_slate_needs() -> None:
    read: list[int] = []

    def candidates() -> Iterator[Candidate]:
        for v in range(1_000_000):
            read.append(v)
            yield Candidate(v, v // 2, float(-v))

    slate = compose(candidates(), 4, watched=[1], max_per_creator=1)
    assert [s.video_id for s in slate] == [0, 2, 4, 6]  # 1 watched, odd ones capped
    assert len(read) <= 9  # a long popularity fallback list costs what k needs, not its length


def test_candidates_are_ranked_by_score_then_video_id() -> None:
    rng = np.random.default_rng(3)
    ids = rng.permutation(200).astype(np.int64)
    scores = rng.integers(0, 20, 200) / 20  # many ties
    order = best_first(ids, scores)
    want = sorted(zip(ids.tolist(), scores.tolist(), strict=True), key=lambda p: (-p[1], p[0]))
    assert list(zip(ids[order].tolist(), scores[order].tolist(), strict=True)) == want
    creators = np.where(ids % 2 == 0, np.nan, ids % 9).astype(np.float64)
    got = list(Ranked(ids[order], creators[order], scores[order], [], 0, 0, {}, []).ranked())
    assert [(c.video_id, c.score) for c in got] == want
    assert all(c.creator_id == (None if c.video_id % 2 == 0 else c.video_id % 9) for c in got)
