"""The feedback loop's last hop: the serving log's impressions and watches into training data.

`vidrec serve` writes every shown video and every click as Parquet parts in the
documented schemas (`vidrec.serving.feedback`); retraining reads a data directory.
`ingest` copies each log part the data does not hold yet into that table's
directory of parts (a table kept as one file is moved into a directory first),
after checking its schema: a part that fails is named and counted, left where it
is, never copied. Rows whose time is more than a day after their part was written
(a client's request time far ahead) are left out and counted (`future_rows`); the
log keeps them. Other rows are validated when training reads them, as any log's are
(a newcomer the users table lacks is rejected there as `unknown_user`, counted).
A part is ingested once, by name: running it again copies only what is new.
The log keeps its parts until the server's retention deletes them
(`[serving] log_retention_days`). Then each table's small parts are merged once
there are many (`vidrec.data.compact`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidrec.data.compact import PREFIX, compact, replaced_names
from vidrec.data.schema import TABLES, check_dataset, check_schema
from vidrec.errors import InvalidInput, SchemaError

LOGGED = ("impressions", "watches")  # what serving logs that training reads
# A row's time after its part was written did not happen yet: the client's request time
# (the API takes one up to year 9999; a simulation's replay is in the past). Ingested, one
# would become the build's "now" (the newest fact) and move every training window past
# the data. The slack covers clocks that disagree by less than this.
FUTURE_SLACK_S = 86_400
WHEN = {"impressions": "ts", "watches": "label_ts"}  # the time the build's "now" reads


def ingest(
    log: Path, data: Path, absent_ok: bool = False, step: Callable[[int], None] = lambda _n: None
) -> dict[str, Any]:
    """Copy the new parts of `log`'s LOGGED tables into `data`; what was copied, what was
    there already and what was refused (with why), per table. `absent_ok`: a log directory
    not there yet (nothing served yet) is nothing to copy, not an error. `step(1)` after
    each log part looked at (a progress bar's)."""
    if absent_ok and not log.exists():
        return {"log": str(log), "data": str(data), "absent": True, "tables": {},
                "parts": 0, "rows": 0, "future_rows": 0, "refused": 0, "merged": 0}  # fmt: skip
    if not log.is_dir():
        raise InvalidInput(f"--log: {log} is not a directory (serve's --log-dir)", file=str(log))
    for table in LOGGED:  # a move a crash cut short: finish it before looking
        staging = data / f".{table}.ingest"
        if staging.is_dir() and not (data / table).exists():
            os.replace(staging, data / table)
    paths = check_dataset(data, LOGGED)  # the tables exist and read: a typo copies nothing
    report = {t: _ingest_table(log / t, _as_directory(paths[t]), step) for t in LOGGED}
    return {
        "log": str(log),
        "data": str(data),
        "tables": report,
        "parts": sum(r["parts"] for r in report.values()),
        "rows": sum(r["rows"] for r in report.values()),
        "future_rows": sum(r["future_rows"] for r in report.values()),
        "refused": sum(len(r["refused"]) for r in report.values()),
        "merged": sum(r["compacted"]["merged"] for r in report.values()),
    }


def _ingest_table(src: Path, dest: Path, step: Callable[[int], None]) -> dict[str, Any]:
    done: dict[str, Any] = {"parts": 0, "rows": 0, "already": 0, "future_rows": 0,
                            "refused": []}  # fmt: skip
    logged = sorted(src.glob("*.parquet")) if src.is_dir() else []
    merged = replaced_names(dest)  # ingested, then merged (and maybe deleted since)
    for part in logged:
        step(1)
        target = dest / f"{PREFIX}{part.name}"
        if target.exists() or target.name in merged:
            done["already"] += 1
            continue
        try:
            pf = pq.ParquetFile(part)  # the footer, read once
            check_schema(pf.schema_arrow, TABLES[dest.name], str(part))
            future = _future(part, pf, WHEN[dest.name])
        except SchemaError as exc:
            done["refused"].append({"file": str(part), "error": exc.message})
            continue
        except (pa.ArrowInvalid, OSError) as exc:
            done["refused"].append({"file": str(part), "error": f"not readable Parquet: {exc}"})
            continue
        n_future = int(pc.sum(future).as_py() or 0)
        _copy(part, target, None if n_future == 0 else pf.read().filter(pc.invert(future)))
        done["parts"] += 1
        done["rows"] += pf.metadata.num_rows - n_future
        done["future_rows"] += n_future
    done["compacted"] = compact(dest, {p.name for p in logged})
    return done


def _future(part: Path, pf: pq.ParquetFile, column: str) -> pa.ChunkedArray:
    """Per row: is its time more than FUTURE_SLACK_S after the part was written?"""
    limit = int(part.stat().st_mtime) + FUTURE_SLACK_S
    times = pf.read(columns=[column]).column(column)
    return pc.fill_null(pc.greater(times, limit), False)  # a null: validation's to reject


def _copy(part: Path, target: Path, kept: pa.Table | None) -> None:
    """Copied (or, when given, only the `kept` rows written) aside, then renamed: a reader
    never sees a part without its footer (nor two ingests at once, each with its own copy,
    a part both wrote into)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if kept is None:
            shutil.copyfile(part, tmp)
        else:
            pq.write_table(kept, tmp)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _as_directory(path: Path) -> Path:
    """The table's directory of parts; a table kept as `<name>.parquet` becomes
    `<name>/<name>.parquet`. Built beside under a hidden name and renamed, so the data
    never holds both (refused); a crash between the two renames leaves the hidden
    directory, which the next run renames first."""
    if path.is_dir():
        return path
    table = path.name.removesuffix(".parquet")
    staging = path.with_name(f".{table}.ingest")
    directory = path.with_name(table)
    staging.mkdir(exist_ok=True)
    try:
        os.replace(path, staging / path.name)
        os.replace(staging, directory)
    except FileNotFoundError:  # another ingest moved it meanwhile
        if not directory.is_dir():
            raise
        with contextlib.suppress(OSError):
            staging.rmdir()
    return directory
