"""The last step of every feature vector, offline and online alike.

Both paths assemble raw columns (request columns + batch features, NULL where
an entity had no facts), then call `finish`. Defaults, dtypes and every
derived or request-time feature are applied here and only here, so the two
paths cannot disagree about them. The work is done on numpy columns: a served
request is a few hundred rows, where pandas' per-call overhead would cost
more than all the arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vidrec.features.spec import BatchFeature, Columns, FeatureSet

Array = npt.NDArray[Any]

ID_LIST = pa.list_(pa.int64())
INT_COLUMNS = ("ts", "user_id", "video_id", "session_position")
# what a request column a log leaves null stands for: the serving API's default, so a row
# reads as the same request would online (a null cast to int64 was -2**63)
NULL_MEANS = {"session_position": 0}


def id_lists(col: Any) -> pa.ListArray:
    """A column of id lists as Arrow list<int64>, missing -> []: vectorisable, one type
    whether the lists came from DuckDB (Arrow), the online store (Python) or a frame."""
    arr = pa.array(col, type=ID_LIST, from_pandas=True)
    return arr.fill_null(pa.scalar([], ID_LIST)) if arr.null_count else arr


def list_contains(lists: Any, values: Any) -> Array:
    """Per row: 1 if values[i] is in lists[i]."""
    arr = id_lists(lists)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    owner = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    out = np.zeros(len(arr), dtype=np.int64)
    out[owner[flat == np.asarray(values, dtype=np.int64)[owner]]] = 1
    return out


def columns_of(frame: pd.DataFrame) -> dict[str, Any]:
    """A frame's columns as arrays: numpy where the dtype is numpy's, else pandas' own."""
    return {c: s.to_numpy() if isinstance(s.dtype, np.dtype) else s.array for c, s in frame.items()}


def as_frame(cols: Columns, index: pd.Index | None = None) -> pd.DataFrame:
    """Columns -> DataFrame; id lists become Arrow-backed list<int64> columns."""
    return pd.DataFrame(
        {
            c: pd.arrays.ArrowExtensionArray(v) if isinstance(v, pa.Array) else v
            for c, v in cols.items()
        },
        index=index,
    )


def fill_defaults(raw: Columns, fs: FeatureSet) -> dict[str, Any]:
    """Every batch feature in its declared dtype, missing values -> its default."""
    n = len(next(iter(raw.values()), ()))
    out = dict(raw)
    for f in fs.batch:
        out[f.name] = _filled(raw.get(f.name), f, n)
    for c in INT_COLUMNS:
        if c in out:
            col = np.asarray(out[c])
            if col.dtype.kind in "fO" and (missing := pd.isna(col)).any():
                col = np.where(missing, NULL_MEANS[c], col)  # ids are never null: validated
            out[c] = col.astype(np.int64)
    return out


def _filled(col: Any, f: BatchFeature, n: int) -> Any:
    if col is None:
        col = np.full(n, None, dtype=object)
    if f.dtype == "list":
        return id_lists(col)
    if f.dtype == "str":
        out = np.array(col, dtype=object)  # a copy: the raw column is the caller's
        out[pd.isna(out)] = f.default
        return out
    x = _numbers(col, f.dtype == "int64")
    fill = np.nan if f.default is None else float(f.default)
    if f.dtype == "int64":  # ints stay exact; only a column with gaps went through float
        return (np.where(np.isnan(x), fill, x) if x.dtype.kind == "f" else x).astype(np.int64)
    x = x.astype(np.float64)
    return np.where(np.isnan(x), fill, x)


def _numbers(col: Any, ints: bool) -> Array:
    """`pd.to_numeric(col)`, but numpy's own conversion for Python values (the online
    store's): pandas' per-call cost was most of `finish`'s time on a served request."""
    if isinstance(col, np.ndarray) and col.dtype.kind in "fiub":
        return col  # numbers already (the online store's numeric columns, offline arrays)
    if not (isinstance(col, np.ndarray) and col.dtype == object):
        return np.asarray(pd.to_numeric(col))
    if ints:
        try:
            return np.array(col, dtype=np.int64)
        except (TypeError, ValueError):  # a None or NaN: floats, as pandas would make them
            pass
    return np.array(col, dtype=np.float64)


def finish_columns(raw: Columns, fs: FeatureSet) -> dict[str, Any]:
    """Raw batch values + request columns -> every feature, as columns."""
    out = fill_defaults(raw, fs)
    with np.errstate(divide="ignore", invalid="ignore"):  # x/0 is inf or NaN, as in pandas
        for t in fs.transforms:
            out[t.name] = np.asarray(t.fn(out)).astype(t.dtype)
    return out


def finish(raw: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    """Raw batch values + request columns -> the full feature frame."""
    return as_frame(finish_columns(columns_of(raw), fs), raw.index)
