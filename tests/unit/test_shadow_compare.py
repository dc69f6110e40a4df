"""Shadow comparison: overlap@k and Kendall tau of the shared videos' ranks."""

from __future__ import annotations

import pytest

from vidrec.serving.shadow import compare


def test_identical_rankings_agree_fully() -> None:
    c = compare([1, 2, 3, 4], [1, 2, 3, 4])
    assert c.overlap == 1.0 and c.rank_correlation == 1.0


def test_reversed_shared_videos_correlate_negatively() -> None:
    c = compare([1, 2, 3, 4], [4, 3, 9, 2, 1])
    assert c.overlap == 1.0 and c.rank_correlation == -1.0


def test_partial_overlap_and_too_few_shared_videos() -> None:
    assert compare([1, 2, 3, 4], [2, 1, 7, 8]).overlap == 0.5
    assert compare([1, 2, 3, 4], [2, 1, 7, 8]).rank_correlation == -1.0
    assert compare([1, 2], [2, 5]).rank_correlation is None
    assert compare([1, 2], [5, 6]).overlap == 0.0


def test_one_discordant_pair_of_three() -> None:
    c = compare([1, 2, 3], [1, 3, 2])
    assert c.rank_correlation == pytest.approx(1 / 3)  # 2 concordant, 1 discordant
