"""Materialise batch features into the online store, through the offline engine.

A snapshot at `as_of` is the point-in-time join evaluated for every known key
of an entity at that instant: the very SQL the training set uses, so a value
served online is by construction the value a training row with the same
snapshot saw. Realtime features are not materialised; their events go to the
store's history stream instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np

from vidrec.features.pit import Group, PointInTime
from vidrec.features.store import OnlineStore


def _native(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def materialize(pit: PointInTime, store: OnlineStore, as_of: int) -> dict[str, int]:
    """Write every entity's snapshot at as_of; returns rows written per entity."""
    written = {}
    for entity in pit.fs.entities().values():
        groups = pit.entity_groups(entity.name)
        if not groups:
            continue
        keys = ", ".join(entity.keys)
        known = " UNION ".join(
            f"SELECT DISTINCT {keys} FROM {g.table} WHERE __t < {as_of}" for g in groups
        )
        rows = f"(SELECT {keys}, {as_of}::BIGINT AS ts, {as_of}::BIGINT AS as_of FROM ({known}))"
        names = [f.name for g in groups for f in g.features]
        cur = pit.con.execute(pit.select(rows, groups, derive_keys=False))
        written[entity.name] = store.write_snapshot(
            entity.name, as_of, _rows(cur, entity.keys, names)
        )
        pit.release()
    return written


def _rows(cur: duckdb.DuckDBPyConnection, keys: tuple[str, ...], names: list[str]) -> Any:
    cols = [d[0] for d in cur.description]
    k_idx = [cols.index(k) for k in keys]
    f_idx = [(n, cols.index(n)) for n in names]
    while batch := cur.fetchmany(10_000):
        for rec in batch:
            yield (tuple(rec[i] for i in k_idx), {n: _native(rec[i]) for n, i in f_idx})


def load_history(
    con: duckdb.DuckDBPyConnection, store: OnlineStore, pit: PointInTime, until_ts: int
) -> int:
    """The realtime-feature events available before until_ts become the store's history
    (replaced, not appended: a refresh that loaded them again served each watch twice)."""
    return store.replace_history(
        itertools.chain.from_iterable(_events(con, g, until_ts) for g in pit.groups if g.realtime)
    )


def _events(con: duckdb.DuckDBPyConnection, g: Group, until_ts: int) -> Iterator[tuple[Any, ...]]:
    f = g.features[0]
    cur = con.execute(
        f"SELECT {', '.join(f.entity.keys)}, {f.join_time}, {f.column} "
        f"FROM ({f.source.sql}) s WHERE {f.join_time} < {until_ts}"
    )
    while batch := cur.fetchmany(50_000):
        yield from batch
