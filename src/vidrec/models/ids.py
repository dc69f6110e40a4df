"""Id lookups in a sorted id array: the one binary search the models and serving share."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


def find_sorted(sorted_ids: Array, ids: Array) -> tuple[npt.NDArray[np.intp], Array]:
    """Position of each id in `sorted_ids` and whether it is there at all (where it is
    not, the position is some valid index, or 0 for an empty array: mask it)."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(sorted_ids)
    pos = np.searchsorted(sorted_ids, ids).clip(0, max(n - 1, 0))
    found = (sorted_ids[pos] == ids) if n else np.zeros(ids.shape, bool)
    return pos, found
