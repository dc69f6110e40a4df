"""The last step of every feature vector, offline and online alike.

Both paths assemble a raw frame (request columns + batch features, NULL where
an entity had no facts), then call `finish`. Defaults, dtypes and every
derived or request-time feature are applied here and only here, so the two
paths cannot disagree about them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vidrec.features.spec import FeatureSet


def _as_id_list(v: Any) -> list[int]:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    return [int(x) for x in v]


def fill_defaults(raw: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    out = raw.copy()
    for f in fs.batch:
        col = out[f.name] if f.name in out else pd.Series([None] * len(out), index=out.index)
        if f.dtype == "list":
            out[f.name] = [_as_id_list(v) for v in col]
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
