"""`SampleDetector` on Alibi Detect's KSDrift: a two-sample Kolmogorov-Smirnov test per
feature on raw values, where decile bins would hide a shift inside a bin.

Alibi Detect is BSL 1.1 licensed since 0.11.5 (see `alibi_detector.py`); it is imported
only when a test runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidrec.monitoring.detector import Array, Statistic

MIN_SAMPLES = 2  # per side; fewer is not tested (NaN), never "no drift"


class KSDetector:
    name = "alibi-ks"

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        return [_one(np.asarray(r, np.float32), np.asarray(c, np.float32))
                for r, c in zip(reference, current, strict=True)]  # fmt: skip


def _one(ref: Array, cur: Array) -> Statistic:
    if len(ref) < MIN_SAMPLES or len(cur) < MIN_SAMPLES:
        return Statistic(float("nan"), 0.0)
    from vidrec.monitoring.alibi_detector import alibi_cd

    # correction across features is the monitor's (with the binned features): one at a time
    cd = alibi_cd().KSDrift(ref[:, None], p_val=0.05, correction="bonferroni")
    data = cd.predict(cur[:, None], drift_type="feature", return_p_val=True,
                      return_distance=True)["data"]  # fmt: skip
    return Statistic(float(data["p_val"][0]), float(data["distance"][0]))
