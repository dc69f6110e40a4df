"""Compaction: a table directory's many small ingested parts merged into a few.

Serving writes its log every few seconds (`serving.log_flush_s`) and ingest copies
each part as it is, so a table ingested every half hour gathers thousands of small
parts a week, and every build opens each one. `compact` merges the parts ingest
wrote (`log-*`) and earlier merged ones (`merged-*`) while they are small, one
merged part per run of equal schemas; parts anyone else put there are left alone.

Nothing a reader may have listed is rewritten or deleted under it: a merged part
names in its footer the parts it replaces (`schema.REPLACES_KEY`); readers leave
those out (`schema.check_tables`), ingest counts their names as ingested, and a
later run deletes them once the merge is GRACE_S old, so a build that listed them
before the merge still reads them. One compaction at a time per table (the
directory is locked): another finds it held and leaves the table as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vidrec.data.schema import REPLACES_KEY, read_schema, read_schema_if_there, replaces

PREFIX = "log-"  # an ingested part's name: the log's, after this
MERGED = "merged-"
MIN_PARTS = 32  # small parts a table holds before they are merged
SMALL_BYTES = 32 << 20  # a part this big stays as it is
TARGET_BYTES = 256 << 20  # a merged part's input, at most (and what a merge holds in memory)
GRACE_S = 3_600  # a replaced part's life after the merge: longer than a build reads its data


def replaced_names(table: Path) -> set[str]:
    """Every name the merged parts of `table` replace (ingested, whether or not still there)."""
    return {n for p in table.glob(f"{MERGED}*.parquet") for n in _replaces(p)}


def compact(
    table: Path,
    logged: set[str] | None = None,
    min_parts: int = MIN_PARTS,
    now: float | None = None,
) -> dict[str, Any]:
    """Delete the parts replaced more than GRACE_S ago, then merge `table`'s small parts
    if it holds at least `min_parts`. `logged`: the log's part names; a replaced part the
    table no longer holds stays named in the new merged part only while the log has it
    (what ingest must not copy again), so footers do not grow with the data's age."""
    now = time.time() if now is None else now
    with _locked(table) as held:
        if not held:
            return {"merged": 0, "into": 0, "deleted": 0, "skipped": "another compaction runs"}
        lists = {p: _replaces(p) for p in sorted(table.glob(f"{MERGED}*.parquet"))}
        deleted = _delete_replaced(table, lists, now)
        gone = {n for names in lists.values() for n in names}
        small = [p for p in sorted(table.glob("*.parquet"))
                 if p.name.startswith((PREFIX, MERGED)) and p.name not in gone
                 and p.stat().st_size < SMALL_BYTES]  # fmt: skip
        if len(small) < min_parts:
            return {"merged": 0, "into": 0, "deleted": deleted}
        groups = [g for g in _groups(small) if len(g) > 1]
        for group in groups:
            carried = [n for p in group for n in lists.get(p, [])]
            kept = [n for n in carried if (table / n).exists() or logged is None
                    or n.removeprefix(PREFIX) in logged]  # fmt: skip
            _merge(table, group, [p.name for p in group] + kept)
        return {"merged": sum(len(g) for g in groups), "into": len(groups), "deleted": deleted}


def _replaces(merged: Path) -> list[str]:
    """What a merged part replaces; nothing if it went since the listing (replaced in turn
    by one that names the same parts)."""
    schema = read_schema_if_there(merged)
    return [] if schema is None else replaces(schema, merged)


@contextlib.contextmanager
def _locked(table: Path) -> Iterator[bool]:
    """The table directory itself locked (no lock file in the data: it would be hashed
    into the data's snapshot id, and listed beside the parts)."""
    fd = os.open(table, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # the lock goes with it


def _delete_replaced(table: Path, lists: dict[Path, list[str]], now: float) -> int:
    """The parts named by merged parts older than GRACE_S, and temporary files as old
    (a copy or a merge a crash cut short)."""
    deleted = 0
    for merged, names in lists.items():
        if now - merged.stat().st_mtime > GRACE_S:
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    (table / name).unlink()
                    deleted += 1
    for tmp in table.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if now - tmp.stat().st_mtime > GRACE_S:
                tmp.unlink()
    return deleted


def _groups(parts: list[Path]) -> Iterator[list[Path]]:
    """The parts grouped by schema (each group becomes one merged part), up to TARGET_BYTES
    of input a group."""
    by_schema: dict[str, list[Path]] = {}
    for p in parts:
        by_schema.setdefault(read_schema(p).remove_metadata().to_string(), []).append(p)
    for same in by_schema.values():
        group: list[Path] = []
        size = 0
        for p in same:
            n = p.stat().st_size
            if group and size + n > TARGET_BYTES:
                yield group
                group, size = [], 0
            group.append(p)
            size += n
        yield group


def _merge(table: Path, group: list[Path], replaced: list[str]) -> None:
    """`group`'s rows, part by part, into one new part naming `replaced` in its footer;
    written aside and renamed, so a reader sees it whole or not at all."""
    schema = read_schema(group[0]).remove_metadata()
    footer = {REPLACES_KEY: json.dumps(list(dict.fromkeys(replaced))).encode()}
    name = f"{MERGED}{time.time_ns()}-{os.getpid()}.parquet"
    tmp = table / f".{name}.tmp"
    try:
        with pq.ParquetWriter(tmp, schema.with_metadata(footer)) as out:
            for p in group:
                out.write_table(pq.read_table(p).replace_schema_metadata(None))
        os.replace(tmp, table / name)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
