"""Build a training set: impressions + delayed labels + point-in-time features.

The only door from logs to a model. The output is a set of rows, not a sequence:
its order is not guaranteed, its content is. Rows are impressions old enough for their
label to be settled (`label_horizon_s`); newer ones are counted as
label-pending, not silently dropped. Features come from the point-in-time
join, batch by batch through the leakage guard and the shared `finish` step,
streamed to Parquet so memory stays bounded whatever the log size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vidrec.config import FeatureConfig
from vidrec.data.validate import OpenDataset, open_dataset, scalar
from vidrec.errors import InvalidInput
from vidrec.features import guard
from vidrec.features.definitions import FEATURES
from vidrec.features.pit import PointInTime, as_of_expr, as_of_value
from vidrec.features.spec import FeatureSet
from vidrec.features.transform import finish

# their types in the file, whatever a batch holds: pandas reads a batch's nullable integers
# as floats and a batch of null text as type null, and every batch must match the first
ID_TYPES = {
    "request_id": pa.int64(),
    "ts": pa.int64(),
    "as_of": pa.int64(),
    "user_id": pa.int64(),
    "video_id": pa.int64(),
    "position": pa.int16(),
    "propensity": pa.float64(),
    "device": pa.string(),
    "session_position": pa.int64(),
    "label_click": pa.int32(),
    "label_watch_seconds": pa.float64(),
}
ID_COLUMNS = tuple(ID_TYPES)


def rows_sql(cfg: FeatureConfig, build_ts: int, where: str = "") -> str:
    """Impressions with settled labels, one row per shown video."""
    return (
        f"SELECT i.request_id, i.ts, {as_of_expr(cfg.refresh_seconds, 'i.ts')}::BIGINT AS as_of, "
        "i.user_id, i.video_id, i.position, i.propensity, i.device, i.session_position, "
        "CAST(w.n IS NOT NULL AS INTEGER) AS label_click, "
        "coalesce(w.watch_seconds, 0)::DOUBLE AS label_watch_seconds "
        "FROM impressions i LEFT JOIN (SELECT request_id, video_id, count(*) AS n, "
        "sum(watch_seconds) AS watch_seconds FROM watches "
        f"WHERE label_ts <= {build_ts} AND request_id IS NOT NULL GROUP BY ALL) w "
        "USING (request_id, video_id) "
        f"WHERE i.ts <= {build_ts - cfg.label_horizon_s} {where}"
    )


def default_build_ts(ds: OpenDataset) -> int:
    got = scalar(
        ds.con,
        "SELECT greatest((SELECT max(ts) FROM impressions), (SELECT max(label_ts) FROM watches))",
    )
    if got is None:
        raise InvalidInput(f"{ds.root}: no valid impressions to build from", file=str(ds.root))
    return int(got)


def feature_frames(
    ds: OpenDataset, pit: PointInTime, rows: str, batch_rows: int = 200_000
) -> Iterator[pd.DataFrame]:
    """Feature frames for relation `rows` (ts, as_of, keys, device): PIT join -> guard -> finish.

    The one path from rows to features, for training rows and for any other rows
    to score offline (e.g. retrieval candidates that were never shown).
    """
    reader = ds.con.sql(pit.select(rows)).to_arrow_reader(batch_rows)
    for batch in reader:
        raw = batch.to_pandas()
        guard.check(raw, pit.groups)
        yield finish(raw, pit.fs)


def features_for(
    data: Path, cfg: FeatureConfig, rows: pd.DataFrame, fs: FeatureSet = FEATURES
) -> pd.DataFrame:
    """Point-in-time features for arbitrary (request, video) rows: request_id, ts, user_id,
    video_id and the request context (device, session_position). Same join, guard and
    transforms as the training set."""
    ds = open_dataset(data, cfg)
    pit = PointInTime(ds.con, fs, cfg.last_n)
    frame = rows.assign(as_of=[as_of_value(cfg.refresh_seconds, int(t)) for t in rows.ts])
    ds.con.register("__cand_df", frame)
    ds.con.execute("CREATE OR REPLACE TEMP TABLE __cand AS SELECT * FROM __cand_df")
    parts = list(feature_frames(ds, pit, "__cand"))
    pit.release()
    out = pd.concat(parts, ignore_index=True) if parts else finish(frame.head(0), fs)
    return out.sort_values(["request_id", "video_id"], kind="stable").reset_index(drop=True)


def build_training_set(
    data: Path,
    out: Path,
    cfg: FeatureConfig,
    fs: FeatureSet = FEATURES,
    build_ts: int | None = None,
    where: str = "",
    progress: Callable[[int], None] | None = None,
    batch_rows: int = 200_000,
) -> dict[str, Any]:
    """Write `out` (Parquet) and return a summary; raises LeakageError on a leaky feature."""
    t0 = time.perf_counter()
    tmp = out.with_suffix(".partial")
    if out.is_dir():  # else the whole join is written beside it, then fails to replace it
        raise InvalidInput(
            f"cannot write {out}: a directory (name the Parquet file)", file=str(out)
        )
    try:  # an unwritable `out` fails now, named, not after the join
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()
        tmp.unlink()
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}", file=str(out)) from exc
    ds = open_dataset(data, cfg, rejects_dir=out.parent / "rejects")
    build_ts = build_ts if build_ts is not None else default_build_ts(ds)
    pit = PointInTime(ds.con, fs, cfg.last_n)
    pit.prepare()
    # a table, not a view: every feature group reads the rows, and the view would redo
    # the validation joins over the whole impression log each time
    ds.con.execute(f"CREATE OR REPLACE TEMP TABLE __rows AS {rows_sql(cfg, build_ts, where)}")
    pending = scalar(
        ds.con, f"SELECT count(*) FROM impressions WHERE ts > {build_ts - cfg.label_horizon_s}"
    )
    total = scalar(ds.con, "SELECT count(*) FROM __rows")
    # no ORDER BY: sorting the wide result of 50M rows spilled tens of GB. The file is a
    # set of rows (same rows every build); consumers sort the split they read.
    keep = [*ID_COLUMNS, *fs.feature_names()]
    writer: pq.ParquetWriter | None = None
    n = positives = 0
    try:
        for frame in feature_frames(ds, pit, "__rows", batch_rows):
            # no pandas metadata: the file should read the same from any Parquet reader
            table = pa.Table.from_pandas(frame[keep], preserve_index=False).replace_schema_metadata(
                None
            )
            if writer is None:
                fields = [pa.field(f.name, ID_TYPES.get(f.name, f.type)) for f in table.schema]
                writer = pq.ParquetWriter(tmp, pa.schema(fields), compression="zstd")
            writer.write_table(table.cast(writer.schema))
            n += len(frame)
            positives += int(frame["label_click"].sum())
            if progress:
                progress(len(frame))
    except BaseException:
        if writer:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is None:  # else the summary would name a file never written
        raise InvalidInput(
            f"no training rows as of build_ts {build_ts}: of {ds.rows.get('impressions', 0)} valid "
            f"impressions, {pending} still wait for their labels (label_horizon_s) and none "
            "other qualifies",
            file=str(out),
        )
    writer.close()
    tmp.replace(out)
    seconds = time.perf_counter() - t0
    return {
        "out": str(out),
        "rows": n,
        "expected_rows": int(total),
        "positives": positives,
        "ctr": round(positives / max(n, 1), 5),
        "label_pending": int(pending),
        "rejected": ds.rejected,
        "rejected_total": ds.rejected_total(),
        "input_rows": ds.rows,
        "build_ts": build_ts,
        "feature_set": fs.name,
        "schema_hash": fs.schema_hash(),
        "model_inputs": len(fs.model_inputs),
        "seconds": round(seconds, 3),
        "rows_per_second": round(n / max(seconds, 1e-9)),
    }
