"""Estimate how much each position is looked at, from the logs alone.

Position-based click model: P(click | video v at position k) = theta_k * r_v.
The same video is shown at different positions (the logging policy ranks by
slate-relative popularity, not by the user), so alternating the two
closed-form updates separates attention (theta) from appeal (r). theta_0 = 1.
No oracle, no randomisation experiment: what an operator can do with logs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def estimate_examination(
    position: npt.NDArray[np.int64],
    item: npt.NDArray[np.int64],
    click: Array,
    iters: int = 100,
    tol: float = 1e-9,
) -> Array:
    """theta[k] for k = 0..max(position), normalised to theta[0] = 1."""
    k_count = int(position.max()) + 1
    items, item_idx = np.unique(item, return_inverse=True)
    clicks_k = np.bincount(position, weights=click, minlength=k_count)
    clicks_v = np.bincount(item_idx, weights=click, minlength=items.size)
    theta = np.ones(k_count)
    for _ in range(iters):
        # r_v = clicks of v / attention v received; theta_k = clicks at k / appeal shown at k
        r = clicks_v / np.maximum(
            np.bincount(item_idx, weights=theta[position], minlength=items.size), 1e-12
        )
        new = clicks_k / np.maximum(
            np.bincount(position, weights=r[item_idx], minlength=k_count), 1e-12
        )
        new /= new[0]
        if np.max(np.abs(new - theta)) < tol:
            return new
        theta = new
    return theta
