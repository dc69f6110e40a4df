"""The nearest-neighbour index interface over item embeddings (inner product).

Two implementations, one per file: `faiss_ivf.IvfIndex` (approximate, the
serving default) and `exact.ExactIndex` (brute force over the same vectors,
the yardstick for ANN recall and the small index of fresh items in serving).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vidrec.errors import InvalidInput

Array = npt.NDArray[Any]


class AnnIndex(Protocol):
    kind: str

    def __len__(self) -> int: ...

    def add(self, ids: Array, vectors: Array) -> None:
        """Add (or replace) items; never retrains, so new videos are searchable at once."""

    def remove(self, ids: Array) -> int:
        """Drop items; returns how many were present."""

    def search(self, queries: Array, k: int) -> tuple[Array, Array]:
        """(ids, scores), each (len(queries), k), best first; missing slots are id -1."""

    def save(self, path: Path) -> None: ...


def as_f32(x: Array, dim: int | None = None) -> npt.NDArray[np.float32]:
    """Contiguous float32 2-D matrix, the only layout faiss takes."""
    out = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    if dim is not None and out.shape[1] != dim:
        raise InvalidInput(
            f"vectors have dimension {out.shape[1]}, index has {dim}", field="vectors"
        )
    return out


def as_ids(ids: Array) -> npt.NDArray[np.int64]:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())


def items(ids: Array, vectors: Array, dim: int) -> tuple[npt.NDArray[np.int64], Array]:
    """Validated (ids, vectors) for `add`: faiss would store a duplicate id twice."""
    i, x = as_ids(ids), as_f32(vectors, dim)
    if len(i) != len(x):
        raise InvalidInput(f"{len(i)} ids for {len(x)} vectors", field="ids")
    uniq, counts = np.unique(i, return_counts=True)
    if (counts > 1).any():
        raise InvalidInput(
            f"duplicate ids in one add: {uniq[counts > 1][:5].tolist()}", field="ids"
        )
    return i, x
