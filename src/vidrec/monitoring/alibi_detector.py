"""`BinnedDetector` on Alibi Detect's ChiSquareDrift (a chi-square test of homogeneity per
feature between reference and window).

Alibi Detect is licensed under the Business Source License 1.1 since 0.11.5 (free for
non-production use; read its licence before running it in production): keep it here,
behind the interface, and import it only when a detector is built (it is slow to
import and pulls in a deep-learning backend).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from vidrec.config import MonitoringConfig
from vidrec.monitoring.detector import Array, Statistic


def alibi_cd() -> Any:
    """`alibi_detect.cd`, imported here alone: its PyTorch backend uses `torch.jit.script`,
    which torch 2.15 deprecates with a FutureWarning at import (theirs to change; it is
    silenced for that import only)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
        import alibi_detect.cd
    return alibi_detect.cd


class ChiSquareDetector:
    name = "alibi-chisquare"

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        results: list[Statistic] = []
        for ref, cur in zip(reference, current, strict=True):
            results.append(_one(np.asarray(ref), np.asarray(cur)))
        return results


def _one(ref: Array, cur: Array) -> Statistic:
    # bins empty on both sides carry no information (and break the test's expected counts)
    keep = (ref + cur) > 0
    if keep.sum() < 2 or ref.sum() == 0 or cur.sum() == 0:
        return Statistic(p_value=float("nan") if not cur.sum() else 1.0, distance=0.0)
    ref, cur = ref[keep], cur[keep]
    x_ref = np.repeat(np.arange(len(ref)), ref)[:, None]
    x = np.repeat(np.arange(len(cur)), cur)[:, None]
    cd = alibi_cd().ChiSquareDrift(x_ref, p_val=0.05, categories_per_feature={0: len(ref)})
    data = cd.predict(x, drift_type="feature", return_p_val=True, return_distance=True)["data"]
    return Statistic(float(data["p_val"][0]), float(data["distance"][0]))


def alibi_detectors(cfg: MonitoringConfig) -> dict[str, Any]:
    """`DriftMonitor`'s detectors for `cfg.mode`, all Alibi Detect (keyword arguments)."""
    if cfg.mode == "binned":
        return {"detector": ChiSquareDetector()}
    from vidrec.monitoring.alibi_ks import KSDetector
    from vidrec.monitoring.alibi_online import CVMOnline

    def online(reference: Array) -> CVMOnline:
        return CVMOnline(reference, cfg.online_ert, cfg.online_window_sizes,
                         cfg.online_bootstraps)  # fmt: skip

    return {"detector": ChiSquareDetector(), "sample_detector": KSDetector(), "online": online}
