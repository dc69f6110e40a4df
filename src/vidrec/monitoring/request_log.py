"""Samples mode's window: the request features serving logged (its `requests/` table).

Serving writes one row per ranked request: the request's own model inputs (its
user and context, `REQUEST_INPUTS`) and the wall-clock time it was served. A
window keeps one request per user, because a user's requests share these values
and would otherwise count as independent evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from vidrec.errors import SchemaError
from vidrec.features.definitions import REQUEST_INPUTS, one_per_user
from vidrec.monitoring.detector import Array

WRITTEN = re.compile(r"part-(\d+)-")  # the log writer's part names: the write time in ns


@dataclass(frozen=True)
class LoggedInputs:
    requests: int  # rows logged in the window
    users: Array  # one row per user: REQUEST_INPUTS columns
    served_at: Array  # when each of `users` was served (s), ascending
    names: tuple[str, ...] = REQUEST_INPUTS

    def column(self, name: str) -> Array:
        return self.users[:, self.names.index(name)]


def read_inputs(
    log_dir: Path, variant: str, version: str, start: float, end: float, seed: int = 0
) -> LoggedInputs:
    """Rows of `variant`/`version` served in [start, end), deduplicated per user (a random
    request of each, seeded), in serving order."""
    frame = _rows(log_dir, variant, version, start, end)
    picked = one_per_user(frame, seed).sort_values("served_at", kind="stable")
    return LoggedInputs(
        requests=len(frame),
        users=picked[list(REQUEST_INPUTS)].to_numpy(np.float64),
        served_at=picked.served_at.to_numpy(np.float64),
    )


def _rows(log_dir: Path, variant: str, version: str, start: float, end: float) -> pd.DataFrame:
    folder = log_dir / "requests"
    columns = ["served_at", "user_id", *REQUEST_INPUTS]
    parts = _written_since(folder, start) if folder.exists() else []
    if not parts:
        return pd.DataFrame({c: np.zeros(0) for c in columns})
    table = ds.dataset(parts, format="parquet")
    missing = [c for c in [*columns, "variant", "model_version"] if c not in table.schema.names]
    if missing:
        raise SchemaError(f"{folder}: the request log lacks {missing}", path=str(folder))
    f = ds.field
    cond = ((f("variant") == variant) & (f("model_version") == version)
            & (f("served_at") >= start) & (f("served_at") < end))  # fmt: skip
    return table.to_table(columns=columns, filter=cond).to_pandas()


def _written_since(folder: Path, start: float) -> list[str]:
    """The parts that may hold rows served at or after `start`. Serving names a part by when
    it wrote it (`part-<ns>-...`), after it served every row in it: a part written before
    `start` has none, and is not opened (the log keeps days of parts, the window is hours).
    A part named otherwise is read."""
    keep = []
    for p in sorted(folder.glob("*.parquet")):
        m = WRITTEN.match(p.name)
        if m is None or int(m.group(1)) / 1e9 >= start:
            keep.append(str(p))
    return keep
