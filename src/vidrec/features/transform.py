"""The last step of every feature vector, offline and online alike.

Both paths assemble a raw frame (request columns + batch features, NULL where
an entity had no facts), then call `finish`. Defaults, dtypes and every
derived or request-time feature are applied here and only here, so the two
paths cannot disagree about them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vidrec.features.spec import FeatureSet

Array = npt.NDArray[Any]

ID_LIST = pa.list_(pa.int64())


def id_lists(col: pd.Series) -> pd.Series:
    """A column of id lists as Arrow list<int64>, missing -> []: vectorisable, one type
    whether the lists came from DuckDB (Arrow) or from the online store (Python)."""
    arr = pa.array(col, type=ID_LIST, from_pandas=True)
    arr = arr.fill_null(pa.scalar([], ID_LIST))
    return pd.Series(pd.arrays.ArrowExtensionArray(arr), index=col.index)


def list_contains(lists: pd.Series, values: pd.Series) -> Array:
    """Per row: 1 if values[i] is in lists[i]."""
    arr = pa.array(lists, type=ID_LIST)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    owner = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    out = np.zeros(len(lists), dtype=np.int64)
    out[owner[flat == values.to_numpy(np.int64)[owner]]] = 1
    return out


def fill_defaults(raw: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    out = raw.copy()
    for f in fs.batch:
        col = out[f.name] if f.name in out else pd.Series([None] * len(out), index=out.index)
        if f.dtype == "list":
            out[f.name] = id_lists(col)
        elif f.dtype == "str":
            out[f.name] = col.astype(object).where(col.notna(), f.default)
        elif f.dtype == "int64":
            out[f.name] = pd.to_numeric(col).fillna(f.default).astype("int64")
        else:
            filled = pd.to_numeric(col).astype("float64")
            out[f.name] = filled.fillna(np.nan if f.default is None else float(f.default))
    for c in ("ts", "user_id", "video_id", "session_position"):
        if c in out:
            out[c] = out[c].astype("int64")
    return out


def finish(raw: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    """Raw batch values + request columns -> the full feature frame."""
    out = fill_defaults(raw, fs)
    for t in fs.transforms:
        out[t.name] = t.fn(out).astype(t.dtype)
    return out
