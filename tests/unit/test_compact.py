"""Compaction of ingested parts: fewer files, the same rows, and nothing ingested twice
(through ingest: test_ingest.py)."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from table_parts import footer, names
from vidrec.data.compact import GRACE_S, MERGED, compact
from vidrec.data.schema import REPLACES_KEY, check_tables, live_parts
from vidrec.errors import InvalidInput

LATER = GRACE_S + 60  # seconds after a merge: its replaced parts may go


def test_a_build_keeps_reading_what_it_listed_before_a_merge(tmp_path: Path) -> None:
    table = tmp_path / "impressions"
    table.mkdir()
    for i in range(4):
        pq.write_table(
            pa.table({"user_id": [i, i], "ts": [10 * i, 10 * i + 1]}), table / f"log-p{i}.parquet"
        )
    listed = [str(p) for p in sorted(table.glob("*.parquet"))]
    assert compact(table, min_parts=2)["into"] == 1
    assert compact(table, min_parts=2)["deleted"] == 0  # the next run, within the grace
    read = duckdb.sql(f"SELECT count(*), sum(user_id) FROM read_parquet({listed})").fetchall()
    assert read[0] == (8, 2 * (0 + 1 + 2 + 3))  # the old listing still reads, within the grace
    assert compact(table, min_parts=2, now=time.time() + LATER)["deleted"] == 4
    [merged] = names(table)
    assert pq.read_table(table / merged).num_rows == 8


def test_a_merge_of_merged_parts_remembers_only_names_the_log_still_holds(tmp_path: Path) -> None:
    table = tmp_path / "t"
    table.mkdir()

    def part(name: str, **cols: list[int]) -> None:
        pq.write_table(pa.table(cols or {"user_id": [1]}), table / name)

    part("log-a.parquet")
    part("log-b.parquet")
    part("mine.parquet")  # a part ingest did not write: never merged
    compact(table, min_parts=2)
    [first] = names(table, f"{MERGED}*")
    assert footer(table / first) == ["log-a.parquet", "log-b.parquet"]
    compact(table, min_parts=2, now=time.time() + LATER)  # a and b deleted
    part("log-c.parquet")
    part("log-d.parquet", user_id=[1], extra=[2])  # another schema: merged apart
    part("log-e.parquet", user_id=[1], extra=[3])
    time.sleep(0.01)
    out = compact(table, {"b.parquet", "c.parquet", "e.parquet"}, min_parts=2)
    assert out == {"merged": 4, "into": 2, "deleted": 0}
    footers = sorted(footer(table / m) for m in names(table, f"{MERGED}*") if m != first)
    # a is gone from the data and the log: forgotten; b is still logged: still ingested
    assert footers == [
        ["log-c.parquet", first, "log-b.parquet"],
        ["log-d.parquet", "log-e.parquet"],
    ]
    live = [p.name for p in live_parts(table)]
    assert "mine.parquet" in live and first not in live and len(live) == 3


def test_one_compaction_at_a_time(tmp_path: Path) -> None:
    table = tmp_path / "t"
    table.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"user_id": [i]}), table / f"log-{i}.parquet")
    fd = os.open(table, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another compaction holds it
        assert compact(table, min_parts=2)["merged"] == 0
        assert names(table, f"{MERGED}*") == []
    finally:
        os.close(fd)
    assert compact(table, min_parts=2)["merged"] == 3


def test_a_merged_part_with_a_bad_footer_is_named(tmp_path: Path, small_sim: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_sim, data)
    (data / "watches").mkdir()
    shutil.move(data / "watches.parquet", data / "watches" / "watches.parquet")
    bad = data / "watches" / f"{MERGED}1.parquet"
    schema = pq.read_schema(data / "watches" / "watches.parquet")
    pq.write_table(
        pa.Table.from_pylist([], schema).replace_schema_metadata({REPLACES_KEY: b"{"}), bad
    )
    with pytest.raises(InvalidInput, match=rf"{bad}: footer key vidrec.replaces is not a list"):
        check_tables(data)


def test_a_part_gone_since_the_listing_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction may delete a replaced part between a reader's listing and its read."""
    from vidrec.data import schema

    table = tmp_path / "t"
    table.mkdir()
    pq.write_table(pa.table({"user_id": [1]}), table / "log-a.parquet")
    listed = [table / "log-a.parquet", table / "log-gone.parquet"]
    monkeypatch.setattr(schema, "parts", lambda path: listed)
    assert list(live_parts(table)) == [table / "log-a.parquet"]
    (table / "log-torn.parquet").write_bytes(b"PAR1 no footer")  # there, but unreadable
    listed.append(table / "log-torn.parquet")
    with pytest.raises(InvalidInput, match=r"log-torn\.parquet: not a readable Parquet"):
        live_parts(table)
