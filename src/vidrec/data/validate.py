"""Open a dataset in DuckDB as clean views, counting every row it rejects.

Structural problems (missing file, missing required or mistyped column) raise a
`SchemaError` naming the file and column; an optional column the log lacks reads as
nulls. Row problems (null ids, unknown users or videos, events before the entity existed,
labels before their event, positions out of range, duplicate entity rows, the second copy
of an event) never vanish: each rejected row is counted by reason and, when asked, written
to `<dir>/<table>.parquet` with its reason.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from vidrec.config import FeatureConfig
from vidrec.data.schema import MAX_POSITION, TABLES, Checked, check_tables, columns

# reason -> predicate, checked in order; the first that holds names the row's reason
RULES: dict[str, list[tuple[str, str]]] = {
    "users": [
        ("null_id", "t.user_id IS NULL OR t.signup_ts IS NULL"),
        ("duplicate_id", "count(*) OVER (PARTITION BY t.user_id) > 1"),
    ],
    "videos": [
        ("null_id", "t.video_id IS NULL OR t.upload_ts IS NULL"),
        ("duplicate_id", "count(*) OVER (PARTITION BY t.video_id) > 1"),
        ("bad_duration", "t.duration_s IS NULL OR isnan(t.duration_s) OR t.duration_s <= 0"),
    ],
    "impressions": [
        (
            "null_id",
            "t.request_id IS NULL OR t.ts IS NULL OR t.user_id IS NULL OR t.video_id IS NULL",
        ),
        ("unknown_user", "u.user_id IS NULL"),
        ("unknown_video", "v.video_id IS NULL"),
        ("before_signup", "t.ts < u.signup_ts"),
        ("before_upload", "t.ts < v.upload_ts"),
        ("bad_position", f"t.position IS NULL OR t.position < 0 OR t.position > {MAX_POSITION}"),
        (
            "bad_propensity",
            "t.propensity IS NOT NULL AND (isnan(t.propensity) "
            "OR t.propensity <= 0 OR t.propensity > 1)",
        ),
    ],
    "watches": [
        (
            "null_id",
            "t.user_id IS NULL OR t.video_id IS NULL OR t.start_ts IS NULL OR t.label_ts IS NULL",
        ),
        ("unknown_user", "u.user_id IS NULL"),
        ("unknown_video", "v.video_id IS NULL"),
        ("label_before_start", "t.label_ts < t.start_ts"),
        ("before_signup", "t.start_ts < u.signup_ts"),
        (
            "bad_watch_seconds",
            "t.watch_seconds IS NULL OR isnan(t.watch_seconds) OR t.watch_seconds < 0",
        ),
    ],
}
# events delivered twice: (partition, order) of the copies; among the rows no rule rejects,
# the first is kept and the others are rejected as "duplicate_event". An impression is a
# video in a request (a second would count its label twice in training); a watch, the same
# row again (the label sums an impression's watches: a copy doubled its watch time).
DUPLICATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "impressions": (("request_id", "video_id"), ("position", "ts")),
    "watches": (
        ("request_id", "user_id", "video_id", "start_ts", "label_ts", "watch_seconds"),
        ("label_ts",),
    ),
}
EVENTS = ("impressions", "watches")
# views, not tables: large logs stream through them instead of being copied.
# entity tables are cleaned first; event tables are checked against the clean ones
JOINS = {
    "users": "",
    "videos": "",
    "impressions": "LEFT JOIN users u ON t.user_id = u.user_id "
    "LEFT JOIN videos v ON t.video_id = v.video_id",
    "watches": "LEFT JOIN users u ON t.user_id = u.user_id "
    "LEFT JOIN videos v ON t.video_id = v.video_id",
}


@dataclass
class OpenDataset:
    con: duckdb.DuckDBPyConnection
    root: Path
    rows: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)

    def rejected_total(self) -> int:
        return sum(sum(r.values()) for r in self.rejected.values())


def connect(cfg: FeatureConfig, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(database)
    con.execute(f"SET memory_limit = '{cfg.duckdb_memory_limit}'")
    con.execute(f"SET threads = {cfg.duckdb_threads}")
    # spill beside the system temp files, never into the caller's working directory
    spill = Path(tempfile.gettempdir()) / "vidrec-duckdb"
    con.execute(f"SET temp_directory = {literal(spill)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def literal(path: Path) -> str:
    """A path as an SQL string literal (a quote in a directory name broke the statement)."""
    return "'" + str(path).replace("'", "''") + "'"


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The single value a query returns (None for no row)."""
    rows = con.execute(sql).fetchall()  # fetch to the end: DuckDB 2 keeps unfinished results
    return rows[0][0] if rows else None


def _scan(table: Checked) -> str:
    if not table.path.is_dir():
        return f"read_parquet({literal(table.path)})"
    # the parts listed when the table was checked, not a glob at each query: a build reads
    # one set of parts however long it runs, while ingest adds parts and compaction merges
    files = ", ".join(literal(p) for p in table.parts)
    return f"read_parquet([{files}], union_by_name = true)"  # parts may differ


def open_dataset(
    root: Path,
    cfg: FeatureConfig,
    rejects_dir: Path | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    tables: tuple[str, ...] = tuple(TABLES),
) -> OpenDataset:
    """Views over the clean rows of `root`: `tables` and the entity tables their rows are
    checked against (each check scans its table once: ask only for what you read)."""
    entities = any(t in EVENTS for t in tables)  # events are checked against the clean ones
    names = tuple(n for n in TABLES if n in tables or (entities and n not in EVENTS))
    found = check_tables(root, names)  # in TABLES' order: entity tables first
    ds = OpenDataset(con or connect(cfg), root)
    for name, table in found.items():
        _clean(ds, name, table, rejects_dir)
    return ds


def read_clean(root: Path, cfg: FeatureConfig, table: str, query: str) -> pd.DataFrame:
    """`query` over the clean rows of one table (named by `table` in it): what a reader
    outside the training-set build gets, validated the same way."""
    ds = open_dataset(root, cfg, tables=(table,))
    try:
        return ds.con.sql(query).df()
    finally:
        ds.con.close()


def _source(table: Checked, name: str) -> str:
    """The table's columns, in schema order; one the file lacks (optional) reads as nulls."""
    cols = columns(table.schemas, TABLES[name])
    select = [c if t is None else f"CAST(NULL AS {t}) AS {c}" for c, t in cols.items()]
    return f"(SELECT {', '.join(select)} FROM {_scan(table)})"


def _repeats(ds: OpenDataset, source: str, keys: tuple[str, ...]) -> bool:
    """Whether any two rows share `keys`: one aggregate, so the window that picks the copies
    (evaluated by every query of the view) is only paid for by a log that has them."""
    by = ", ".join(keys)
    sql = f"SELECT 1 FROM {source} GROUP BY {by} HAVING count(*) > 1 LIMIT 1"
    return scalar(ds.con, sql) is not None


def _clean(ds: OpenDataset, name: str, table: Checked, rejects_dir: Path | None) -> None:
    source, cols = _source(table, name), list(TABLES[name].columns)
    reason = "CASE " + " ".join(f"WHEN {p} THEN '{r}'" for r, p in RULES[name]) + " END"
    select = ", ".join(f"t.{c}" for c in cols)
    checked = f"SELECT {select}, {reason} AS reject_reason FROM {source} t {JOINS[name]}"
    keys, order = DUPLICATES.get(name, ((), ()))
    if keys and _repeats(ds, source, keys):
        copy = (f"reject_reason IS NULL AND row_number() OVER (PARTITION BY reject_reason, "
                f"{', '.join(keys)} ORDER BY {', '.join(order)}) > 1")  # fmt: skip
        checked = (f"SELECT {', '.join(cols)}, CASE WHEN {copy} THEN 'duplicate_event' "
                   f"ELSE reject_reason END AS reject_reason FROM ({checked})")  # fmt: skip
    ds.con.execute(f"CREATE OR REPLACE TEMP VIEW {name}__checked AS {checked}")
    ds.con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {', '.join(cols)} "
        f"FROM {name}__checked WHERE reject_reason IS NULL"
    )
    counts = ds.con.execute(
        f"SELECT reject_reason, count(*) FROM {name}__checked GROUP BY ALL"
    ).fetchall()
    ds.rejected[name] = {r: n for r, n in counts if r is not None}
    ds.rows[name] = sum(n for r, n in counts if r is None)
    if rejects_dir is not None and ds.rejected[name]:
        rejects_dir.mkdir(parents=True, exist_ok=True)
        ds.con.execute(
            f"COPY (SELECT * FROM {name}__checked WHERE reject_reason IS NOT NULL) "
            f"TO {literal(rejects_dir / f'{name}.parquet')} (FORMAT parquet)"
        )
