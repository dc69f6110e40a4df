"""Online feature vectors: store lookups + the shared `finish` step.

Given request rows (one per candidate: ts, user_id, video_id, device,
session_position), it reads each entity's snapshot row, derives dependent keys
(creator, category) from the video's attributes exactly as the offline join
does, reads the realtime history, and hands the raw columns to
`transform.finish_columns` - the same function the training set went through.
Serving asks for `columns` (no DataFrame: a request is a few hundred rows, and
pandas' per-call overhead would dominate); `frame` is the same as a DataFrame.

Rows that every request reads (videos, creators) are cached, each entity's until
the store reports a new version of its snapshot (asked on every call): a rewritten
snapshot is served from the next request on, never an older one after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.features.definitions import USER
from vidrec.features.spec import Columns, FeatureSet
from vidrec.features.store import OnlineStore, Row
from vidrec.features.transform import as_frame, columns_of, finish_columns, id_lists

CACHE_ROWS = 50_000  # per entity (~30 MB of videos); then it starts over
NUMERIC = ("int64", "float64")  # feature dtypes read into float columns


class OnlineFeatures:
    def __init__(self, store: OnlineStore, fs: FeatureSet, last_n: int) -> None:
        self.store, self.fs, self.last_n = store, fs, last_n
        self.providers = {entity for entity, _attr in fs.derived_keys.values()}
        entities = fs.entities()
        # entities that provide derived keys are read first
        order = sorted(entities.values(), key=lambda e: e.name not in self.providers)
        self.snapshot = [
            (e, [f.name for f in fs.batch if f.entity == e and f.freshness == "snapshot"])
            for e in order
        ]
        self.realtime = [f for f in fs.batch if f.freshness == "realtime"]
        # a user's own rows are rarely read twice: caching them would only hold memory
        self.shared = {e.name for e in order if "user_id" not in e.keys}
        # numbers are read into float arrays (NaN: missing), converted once per row read,
        # not once per request in `finish` (and never through a failed int conversion)
        self.numeric = frozenset(f.name for f in fs.batch if f.dtype in NUMERIC)
        self.cache: dict[str, _RowCache] = {}

    def only(self, entities: set[str]) -> OnlineFeatures:
        """The same service for `entities`' features alone (`FeatureSet.subset`)."""
        return OnlineFeatures(self.store, self.fs.subset(entities), self.last_n)

    def as_of(self, ts: int) -> int:
        """What a request at `ts` has its user features computed as of: the user
        snapshot's time (the request's own when no snapshot was written)."""
        snapshot = self.store.snapshot_time(USER.name)
        return ts if snapshot is None else snapshot

    def frame(self, requests: pd.DataFrame) -> pd.DataFrame:
        return as_frame(self.columns(columns_of(requests.reset_index(drop=True))))

    def columns(self, requests: Columns, given: Columns | None = None) -> dict[str, Any]:
        """Request columns -> every feature's column (`frame` without the DataFrame)."""
        return self.finish(self.read(requests, given))

    def read(self, requests: Columns, given: Columns | None = None) -> dict[str, Any]:
        """The request columns and every batch feature's raw column, before `finish`.
        `given`: raw columns these rows already have (the user's, which retrieval read for
        the same request): an entity or history whose columns are all given is not read."""
        given = given or {}
        raw = {**requests, **given}  # a feature column among `requests` is read all the same
        versions = self.store.snapshot_versions() if self.shared else {}
        for entity, names in self.snapshot:
            if names and not all(n in given for n in names):
                self._lookup(raw, entity.name, entity.keys, names, versions.get(entity.name))
            if entity.name in self.providers:
                self._derive_keys(raw, entity.name)
        for f in self.realtime:
            if f.name in given:
                continue
            # one read per (user, time): a request's candidates share it
            pairs, where = _distinct(raw[f.entity.keys[0]], raw["ts"])
            lists = [self.store.history(int(u), int(t), self.last_n) for u, t in pairs]
            raw[f.name] = id_lists(lists).take(where)
        return raw

    def finish(self, raw: dict[str, Any]) -> dict[str, Any]:
        return finish_columns(raw, self.fs)

    def names_of(self, entity: str) -> list[str]:
        """The raw columns `read` gives `entity`'s features (snapshot and history)."""
        return [f.name for f in self.fs.batch if f.entity.name == entity]

    def _lookup(
        self,
        raw: dict[str, Any],
        entity: str,
        keys: tuple[str, ...],
        names: list[str],
        version: str | None,
    ) -> None:
        # rows share keys (one user, a few creators): read and unpack each key once
        uniq, where = _distinct(*(raw[k] for k in keys))
        if entity in self.shared and version is not None:
            table = self._table(entity, version, names)
            pos = table.positions(uniq, lambda ks: self.store.read(entity, [_key(t) for t in ks]))
            for n in names:
                raw[n] = table.columns[n][pos[where]]
            return
        valid = [t for t in uniq if not _any_missing(t)]
        found = dict(zip(valid, self.store.read(entity, [_key(t) for t in valid]), strict=True))
        rows = [found.get(t) or {} for t in uniq]
        for n in names:
            raw[n] = _column([r.get(n) for r in rows], n in self.numeric)[where]

    def _table(self, entity: str, version: str, names: list[str]) -> _RowCache:
        """A shared entity's rows of snapshot `version`, as columns; a new version (or a full
        cache) starts over."""
        cached = self.cache.get(entity)
        if cached is None or cached.version != version or len(cached) > CACHE_ROWS:
            cached = self.cache[entity] = _RowCache(version, names, self.numeric)
        # a rewrite between the version check and this read is seen by the next request
        return cached

    def _derive_keys(self, raw: dict[str, Any], entity: str) -> None:
        for key, (e, attr) in self.fs.derived_keys.items():
            if e != entity:
                continue
            is_str = self.fs.by_name(attr).dtype == "str"
            values = raw[attr].tolist() if isinstance(raw[attr], np.ndarray) else raw[attr]
            raw[key] = [None if _missing(v) else (str(v) if is_str else int(v)) for v in values]


def _distinct(*cols: Any) -> tuple[list[tuple[Any, ...]], npt.NDArray[np.intp]]:
    """The distinct rows of `cols` in order of appearance, and each row's index among them.
    As Python values: hashing numpy scalars costs far more."""
    rows = list(zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in cols), strict=True))
    index = {r: i for i, r in enumerate(dict.fromkeys(rows))}
    return list(index), np.fromiter(map(index.__getitem__, rows), np.intp, len(rows))


class _RowCache:
    """Snapshot rows of one entity as columns, one row per key seen: `numeric` names as
    floats, the others as objects. Row 0 is all missing (NaN or None), for keys with a
    missing part or absent from the store. A request's columns are then one fancy index
    each, not a dict lookup per row and feature."""

    def __init__(self, version: str, names: list[str], numeric: frozenset[str] = frozenset()):
        self.version = version
        # a replica ranks requests in worker threads: unlocked, one saw another's keys as
        # absent while they were read, and two appends raced (a ValueError in CI)
        self.lock = threading.Lock()
        self.index: dict[tuple[Any, ...], int] = {}  # key -> row (0: absent)
        self.size = 1
        self.columns = {n: _column([None] * 256, n in numeric) for n in names}

    def __len__(self) -> int:
        return len(self.index)

    def positions(
        self, keys: list[tuple[Any, ...]], read: Callable[[list[Any]], list[Row | None]]
    ) -> npt.NDArray[np.intp]:
        with self.lock:
            new = [t for t in keys if t not in self.index]
            valid = [t for t in new if not _any_missing(t)]
            if valid:
                found = [(t, r) for t, r in zip(valid, read(valid), strict=True) if r is not None]
                self._append(found)
            for t in new:
                self.index.setdefault(t, 0)
            return np.fromiter((self.index[t] for t in keys), np.intp, len(keys))

    def _append(self, found: list[tuple[tuple[Any, ...], Row]]) -> None:
        end = self.size + len(found)
        capacity = len(next(iter(self.columns.values()), []))
        if end > capacity:  # double: appending stays linear over the cache's life
            grown = max(end, 2 * capacity)
            for n, col in self.columns.items():
                more = _column([None] * (grown - capacity), col.dtype != object)
                self.columns[n] = np.concatenate([col, more])
        for n, col in self.columns.items():
            col[self.size : end] = _column([r.get(n) for _, r in found], col.dtype != object)
        for i, (t, _) in enumerate(found):
            self.index[t] = self.size + i
        self.size = end


def _column(values: list[Any], numeric: bool) -> npt.NDArray[Any]:
    """Stored values as a column: floats with NaN for None, or objects as they are."""
    if numeric:
        return np.array(values, dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values  # never a 2-D array, whatever the values are
    return out


def _any_missing(t: tuple[Any, ...]) -> bool:
    return any(_missing(v) for v in t)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)  # v != v: NaN (np.isnan: 1 us)


def _key(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.item() if isinstance(v, np.generic) else v for v in t)
