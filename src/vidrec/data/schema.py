"""The documented interaction-log schema, and checks that name what is wrong.

Timestamps are integer epoch seconds (UTC). Every table a model may read is
listed here; the simulator's ground-truth oracle is deliberately not.
Structural problems (missing or mistyped column, unreadable file) raise
`SchemaError` naming the file and column; row-level problems are counted and
rejected by `vidrec.data.validate`, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vidrec.errors import InvalidInput, SchemaError

Kind = str  # "int" | "float" | "str"
# a merged part's footer key: the JSON list of part names it replaces (readers skip those)
REPLACES_KEY = b"vidrec.replaces"


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Kind]
    required: tuple[str, ...]
    doc: str


USERS = Table(
    "users",
    {"user_id": "int", "country": "str", "age_bucket": "str", "device": "str", "signup_ts": "int"},
    ("user_id", "signup_ts"),
    "one row per user; signup_ts = when the user exists",
)
VIDEOS = Table(
    "videos",
    {
        "video_id": "int",
        "category": "str",
        "creator_id": "int",
        "language": "str",
        "duration_s": "float",
        "upload_ts": "int",
    },
    ("video_id", "duration_s", "upload_ts"),
    "one row per video; upload_ts = when it can be shown",
)
IMPRESSIONS = Table(
    "impressions",
    {
        "request_id": "int",
        "ts": "int",
        "user_id": "int",
        "video_id": "int",
        "position": "int",
        "propensity": "float",
        "device": "str",
        "session_position": "int",
    },
    ("request_id", "ts", "user_id", "video_id", "position"),
    "one row per shown video; ts = when the slate was served (known at once)",
)
WATCHES = Table(
    "watches",
    {
        "request_id": "int",
        "user_id": "int",
        "video_id": "int",
        "position": "int",
        "start_ts": "int",
        "watch_seconds": "float",
        "label_ts": "int",
    },
    ("request_id", "user_id", "video_id", "start_ts", "watch_seconds", "label_ts"),
    "one row per click; label_ts = when watch_seconds became known (delayed label)",
)

TABLES = {t.name: t for t in (USERS, VIDEOS, IMPRESSIONS, WATCHES)}
SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR"}
# positions a slate of the serving API's largest k (500) has: the position-bias estimate
# keeps one value per position up to the largest it sees
MAX_POSITION = 499


def _kind_of(t: pa.DataType) -> Kind | None:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_null(t):  # every value null (e.g. an empty table from pandas): rows decide
        return "null"
    return None


def check_schema(schema: pa.Schema, table: Table, source: str) -> None:
    """Raise SchemaError naming the first missing or mistyped column of `table`."""
    names = set(schema.names)
    for col, kind in table.columns.items():
        if col not in names:
            if col in table.required:
                raise SchemaError(
                    f"{source}: missing required column {col!r} of table {table.name!r}",
                    file=source,
                    column=col,
                )
            continue
        got = _kind_of(schema.field(col).type)
        ok = got in (kind, "null") or (kind == "float" and got == "int")
        if not ok:
            raise SchemaError(
                f"{source}: column {col!r} must be {kind}, got {schema.field(col).type}",
                file=source,
                column=col,
                expected=kind,
                got=str(schema.field(col).type),
            )
    # optional columns absent: allowed; validation reads them as nulls (see `columns`)


def columns(schemas: list[pa.Schema], table: Table) -> dict[str, str | None]:
    """Each of `table`'s columns -> None when some part (`schemas`) has values for it, else
    the SQL type of the nulls that stand in (absent or all-null): every reader sees every
    column. Parts that lack a column some others have read it as nulls too (by name)."""

    def has(schema: pa.Schema, c: str) -> bool:
        return c in schema.names and not pa.types.is_null(schema.field(c).type)

    return {
        c: None if any(has(s, c) for s in schemas) else SQL_TYPES[k]
        for c, k in table.columns.items()
    }


def table_path(root: Path, table: Table) -> Path:
    """`root/<name>.parquet` or a directory `root/<name>/` of Parquet parts."""
    found = [p for p in (root / f"{table.name}.parquet", root / table.name) if p.exists()]
    if len(found) == 2:  # reading either would leave the other's rows out, unsaid
        raise InvalidInput(
            f"{root}: both {found[0].name} and {found[1].name}/ hold table {table.name!r}; "
            "keep one (merge the parts, or move the file into the directory)",
            file=str(found[0]),
        )
    if found:
        return found[0]
    raise InvalidInput(
        f"{root}: no {table.name}.parquet (table {table.name!r}: {table.doc})",
        file=str(root / f"{table.name}.parquet"),
    )


def parts(path: Path) -> list[Path]:
    """The Parquet files of a table: the file, or every part of its directory (replaced
    ones too: `check_tables` leaves those out)."""
    if not path.is_dir():
        return [path]
    found = sorted(path.glob("*.parquet"))
    if not found:
        raise InvalidInput(f"{path}: directory has no .parquet files", file=str(path))
    return found


def read_schema(part: Path) -> pa.Schema:
    """One part's schema (its footer only): parts written at different times may differ."""
    try:
        return pq.read_schema(part)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{part}: not a readable Parquet file: {exc}", file=str(part)) from exc


def replaces(schema: pa.Schema, part: Path) -> list[str]:
    """The names of the parts a merged part replaces (`vidrec.data.compact`), from its
    footer: none for any other part."""
    raw = (schema.metadata or {}).get(REPLACES_KEY)
    if raw is None:
        return []
    try:
        names = json.loads(raw)
    except ValueError:
        names = None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise InvalidInput(f"{part}: footer key {REPLACES_KEY.decode()} is not a list of "
                           "part names", file=str(part))  # fmt: skip
    return names


def live_parts(path: Path) -> dict[Path, pa.Schema]:
    """A table's parts a reader reads, each with its schema: all but those a merged part
    replaces (kept a while for builds that listed them before the merge)."""
    listed = {}
    for part in parts(path):
        if (schema := read_schema_if_there(part)) is not None:
            listed[part] = schema
    gone = {n for part, schema in listed.items() for n in replaces(schema, part)}
    return {part: schema for part, schema in listed.items() if part.name not in gone}


def read_schema_if_there(part: Path) -> pa.Schema | None:
    """Its schema; None if the part went since the listing (only compaction deletes one,
    and only one a merged part replaces: a reader leaves it out all the same)."""
    try:
        return read_schema(part)
    except InvalidInput:
        if part.exists():
            raise
        return None


@dataclass(frozen=True)
class Checked:
    """A table found and schema-checked: where, the parts a reader reads (a merged part's
    replaced ones left out) and each one's schema (footers read once: readers choose the
    columns to stand in as nulls from them)."""

    path: Path
    parts: list[Path]
    schemas: list[pa.Schema]


def check_tables(root: Path, names: tuple[str, ...] = tuple(TABLES)) -> dict[str, Checked]:
    """The `names` tables under root (all four by default), every part of each
    schema-checked (a mistyped column in one part is named with that part)."""
    found = {}
    for table in (TABLES[n] for n in names):
        path = table_path(root, table)
        live = live_parts(path)
        for part, schema in live.items():
            check_schema(schema, table, str(part))
        found[table.name] = Checked(path, list(live), list(live.values()))
    return found


def check_dataset(root: Path, names: tuple[str, ...] = tuple(TABLES)) -> dict[str, Path]:
    """`check_tables`' paths."""
    return {n: c.path for n, c in check_tables(root, names).items()}
