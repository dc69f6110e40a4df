"""`VidrecCTRDrop`'s decision in Python (`ctr_dropped`): material and significant together.
tests/promtool/ctr.yml checks the same cases against the generated PromQL."""

from __future__ import annotations

import numpy as np
import pytest

from vidrec.config import AlertConfig
from vidrec.monitoring.ctr import ctr_dropped

A = AlertConfig(ctr_drop=0.1, ctr_z=3.5)


@pytest.mark.parametrize(
    ("shown", "baseline", "alarm"),
    [
        ((1200, 60), (5400, 450), True),  # 5 % vs 8.3 %: 40 % down, z = 3.9
        ((120, 6), (540, 45), False),  # the same shares on a tenth of the traffic: z = 1.2
        ((120_000, 11_040), (540_000, 52_560), False),  # z = 5.7, but only 5.5 % down
        ((1200, 120), (5400, 450), False),  # up, not down
        ((0, 0), (5400, 450), False),  # nothing shown: no data
        ((1200, 60), (0, 0), False),  # no baseline
    ],
)
def test_a_drop_must_be_material_and_significant(
    shown: tuple[int, int], baseline: tuple[int, int], alarm: bool
) -> None:
    assert ctr_dropped(shown, baseline, A) is alarm


def test_on_a_steady_ctr_the_z_test_alarms_about_as_rarely_as_it_claims() -> None:
    rng = np.random.default_rng(0)
    loose = AlertConfig(ctr_drop=0.01, ctr_z=2.0)  # one-sided P(z > 2) = 2.3 %
    n = 20_000
    alarms = sum(
        ctr_dropped((2000, rng.binomial(2000, 0.1)), (8000, rng.binomial(8000, 0.1)), loose)
        for _ in range(n)
    )
    assert 0.015 < alarms / n < 0.03
