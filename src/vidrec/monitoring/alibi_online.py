"""`OnlineDetector` on Alibi Detect's CVMDriftOnline: Cramer-von Mises statistics over
sliding windows of the request stream, with thresholds simulated from the reference so
that without drift a false alarm comes once per `ert` samples on average.

Calibration simulates `n_bootstraps` streams (seconds to a minute: do it once per model
version). Alibi Detect is BSL 1.1 licensed since 0.11.5 (see `alibi_detector.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidrec.monitoring.detector import Array, OnlineResult


class CVMOnline:
    name = "alibi-cvm-online"

    def __init__(
        self, reference: Array, ert: int, window_sizes: Sequence[int], n_bootstraps: int
    ) -> None:
        from vidrec.monitoring.alibi_detector import alibi_cd

        ref = np.asarray(reference, np.float32)
        if len(ref) <= max(window_sizes):
            raise ValueError(
                f"online detector: {len(ref)} reference samples, need more than the largest "
                f"window ({max(window_sizes)})"
            )
        self._cd = alibi_cd().CVMDriftOnline(ref, ert=ert, window_sizes=list(window_sizes),
                                  n_bootstraps=n_bootstraps, verbose=False)  # fmt: skip
        self._drift, self._seen, self._ratio = False, 0, float("nan")

    def update(self, rows: Array) -> OnlineResult:
        for row in np.asarray(rows, np.float32):
            data = self._cd.predict(row, return_test_stat=True)["data"]
            self._seen += 1
            stat, threshold = data.get("test_stat"), data.get("threshold")
            stat = np.asarray(stat if stat is not None else np.nan, np.float64)
            if np.isfinite(stat).any() and threshold is not None:
                # one threshold per time step, over every window and feature (Ross et al.)
                self._ratio = float(np.nanmax(stat) / np.ravel(threshold)[0])
            self._drift = self._drift or bool(data["is_drift"])
        return OnlineResult(self._drift, self._seen, self._ratio)
