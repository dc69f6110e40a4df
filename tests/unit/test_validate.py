"""Bad input: a clear error naming file and column, or a counted, saved rejection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vidrec.config import FeatureConfig
from vidrec.data.schema import MAX_POSITION
from vidrec.errors import InvalidInput, SchemaError
from vidrec.features.training_set import build_training_set


@pytest.fixture
def copy(small_sim: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(small_sim, dst)
    return dst


def _rewrite(path: Path, frame: pd.DataFrame) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def test_missing_column_names_file_and_column(copy: Path, tmp_path: Path) -> None:
    f = copy / "impressions.parquet"
    _rewrite(f, pd.read_parquet(f).drop(columns=["user_id"]))
    with pytest.raises(SchemaError, match=r"impressions\.parquet.*'user_id'") as e:
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())
    assert e.value.details["column"] == "user_id" and e.value.http_status == 422


def test_nan_ids_are_a_mistyped_column(copy: Path, tmp_path: Path) -> None:
    f = copy / "users.parquet"
    users = pd.read_parquet(f)
    users["user_id"] = users["user_id"].astype(float)
    users.loc[3, "user_id"] = float("nan")
    _rewrite(f, users)
    with pytest.raises(SchemaError, match=r"users\.parquet.*'user_id' must be int"):
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())


def test_a_table_both_as_a_file_and_as_parts_is_ambiguous(copy: Path, tmp_path: Path) -> None:
    (copy / "watches").mkdir()
    shutil.copy(copy / "watches.parquet", copy / "watches" / "part-0.parquet")
    with pytest.raises(InvalidInput, match=r"both watches\.parquet and watches/"):
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())


def test_parts_written_at_different_times_may_differ_in_optional_columns_only(
    copy: Path, tmp_path: Path
) -> None:
    """Each part is checked (a mistyped column in the second part got in, cast); a part
    without an optional column reads it as nulls (it failed: union_by_name)."""
    f, parts = copy / "impressions.parquet", copy / "impressions"
    table = pq.read_table(f)
    f.unlink()
    parts.mkdir()
    late = pc.greater_equal(table["request_id"], int(np.median(table["request_id"])))
    pq.write_table(table.filter(pc.invert(late)), parts / "part-0.parquet")
    second = table.filter(late)
    device = second.schema.get_field_index("device")
    pq.write_table(second.set_column(device, "device", pa.array([1] * second.num_rows)),
                   parts / "part-1.parquet")  # fmt: skip
    with pytest.raises(SchemaError, match=r"part-1\.parquet: column 'device' must be str"):
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())
    pq.write_table(second.drop_columns(["device", "propensity"]), parts / "part-1.parquet")
    # small batches: some hold no device at all (type null to pandas), which the file must take
    s = build_training_set(copy, tmp_path / "t.parquet", FeatureConfig(), batch_rows=5_000)
    assert s["input_rows"]["impressions"] == table.num_rows and s["rejected_total"] == 0
    rows = pd.read_parquet(tmp_path / "t.parquet", columns=["request_id", "device"])
    late = rows.request_id.isin(second.column("request_id").to_numpy())
    assert rows.device[late].isna().all() and rows.device[~late].notna().all()


def test_a_quote_in_a_directory_name_is_a_path_not_sql(copy: Path, tmp_path: Path) -> None:
    data = copy.rename(tmp_path / "o'brien")
    users = pd.read_parquet(data / "users.parquet")
    _rewrite(data / "users.parquet", pd.concat([users, users.iloc[[0]]]))  # rejected, saved
    out = tmp_path / "it's" / "t.parquet"
    s = build_training_set(data, out, FeatureConfig())
    assert s["rows"] > 0 and s["rejected"]["users"] == {"duplicate_id": 2}
    assert len(pd.read_parquet(out.parent / "rejects" / "users.parquet")) == 2


def test_missing_or_unreadable_file(copy: Path, tmp_path: Path) -> None:
    (copy / "videos.parquet").unlink()
    with pytest.raises(InvalidInput, match=r"videos\.parquet"):
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())
    (copy / "videos.parquet").write_text("not parquet")
    with pytest.raises(InvalidInput, match="not a readable Parquet"):
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())


def test_an_empty_table_has_no_rows_rather_than_mistyped_columns(
    copy: Path, tmp_path: Path
) -> None:
    """pandas writes an empty table's text columns as type null: not a mistyped column."""
    f = copy / "impressions.parquet"
    pd.read_parquet(f).iloc[:0].to_parquet(f)
    assert pq.read_schema(f).field("device").type == pa.null()
    with pytest.raises(InvalidInput, match="of 0 valid impressions"):
        build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())


def test_a_request_column_the_log_lacks_reads_as_the_api_s_default(
    copy: Path, tmp_path: Path
) -> None:
    """A log without session_position: each row as the request would be served (0), not
    a null cast to int64 (-2**63, a feature value no request can have)."""
    f = copy / "impressions.parquet"
    _rewrite(f, pd.read_parquet(f).drop(columns=["session_position"]))
    build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())
    got = pd.read_parquet(tmp_path / "t.parquet", columns=["session_position"]).session_position
    assert (got == 0).all()


def test_positions_the_position_bias_estimate_cannot_hold_are_rejected(
    copy: Path, tmp_path: Path
) -> None:
    imp = pd.read_parquet(copy / "impressions.parquet")
    imp["position"] = imp["position"].astype("Int64")
    imp.loc[imp.index[:3], "position"] = [-1, MAX_POSITION + 1, None]
    _rewrite(copy / "impressions.parquet", imp)
    s = build_training_set(copy, tmp_path / "t.parquet", FeatureConfig())
    assert s["rejected"]["impressions"] == {"bad_position": 3}
    assert pd.read_parquet(tmp_path / "t.parquet", columns=["position"]).position.min() >= 0


def test_bad_rows_are_counted_and_saved_never_dropped_silently(copy: Path, tmp_path: Path) -> None:
    imp = pd.read_parquet(copy / "impressions.parquet")
    wat = pd.read_parquet(copy / "watches.parquet")
    users = pd.read_parquet(copy / "users.parquet")
    bad_imp = imp.iloc[:5].copy()
    bad_imp["user_id"] = 10_000_000  # unknown user
    early = imp.iloc[5:8].copy()
    early["request_id"] += 10_000_000
    early["ts"] = users.set_index("user_id").loc[early.user_id, "signup_ts"].to_numpy() - 10
    bad_wat = wat.iloc[:4].copy()
    bad_wat["label_ts"] = bad_wat["start_ts"] - 1  # label before its event
    _rewrite(copy / "impressions.parquet", pd.concat([imp, bad_imp, early]))
    _rewrite(copy / "watches.parquet", pd.concat([wat, bad_wat]))
    _rewrite(copy / "users.parquet", pd.concat([users, users.iloc[[7]]]))  # duplicate id

    out = tmp_path / "ts" / "t.parquet"
    s = build_training_set(copy, out, FeatureConfig())
    # both copies of the duplicated user are rejected, so its events become unknown_user
    dup_user = int(users.iloc[7].user_id)
    dup_imp = int((imp.user_id == dup_user).sum())
    dup_wat = int((wat.user_id == dup_user).sum())
    assert s["rejected"]["users"] == {"duplicate_id": 2}
    assert s["rejected"]["impressions"] == {"unknown_user": 5 + dup_imp, "before_signup": 3}
    want_wat = {"label_before_start": 4 - int((bad_wat.user_id == dup_user).sum())}
    if dup_wat:
        want_wat["unknown_user"] = dup_wat + int((bad_wat.user_id == dup_user).sum())
    assert s["rejected"]["watches"] == want_wat
    assert s["rejected_total"] == sum(sum(v.values()) for v in s["rejected"].values())
    saved = pd.read_parquet(out.parent / "rejects" / "impressions.parquet")
    assert set(saved["reject_reason"]) == {"unknown_user", "before_signup"}
    # every valid, settled impression is a row; nothing else went missing
    assert s["rows"] == s["expected_rows"]


def test_an_event_delivered_twice_counts_once_and_the_copy_is_rejected(
    copy: Path, tmp_path: Path
) -> None:
    """Logs delivered at least once repeat rows: a repeated watch doubled its impression's
    watch time in the label, a repeated impression made two training rows of one."""
    imp = pd.read_parquet(copy / "impressions.parquet")
    wat = pd.read_parquet(copy / "watches.parquet").dropna(subset=["request_id"])
    once = build_training_set(copy, tmp_path / "once.parquet", FeatureConfig())
    again = imp.iloc[:3].copy()
    again.loc[again.index[0], "position"] = 99  # the same video in the same request, moved
    _rewrite(copy / "impressions.parquet", pd.concat([imp, again]))
    _rewrite(copy / "watches.parquet", pd.concat([pd.read_parquet(copy / "watches.parquet"),
                                                  wat.iloc[:4]]))  # fmt: skip
    twice = build_training_set(copy, tmp_path / "twice.parquet", FeatureConfig())
    assert twice["rejected"]["impressions"] == {"duplicate_event": 3}
    assert twice["rejected"]["watches"] == {"duplicate_event": 4}
    assert (twice["rows"], twice["positives"]) == (once["rows"], once["positives"])
    cols = ["request_id", "video_id", "position", "label_watch_seconds"]
    a = pd.read_parquet(tmp_path / "once.parquet", columns=cols).sort_values(cols[:2])
    b = pd.read_parquet(tmp_path / "twice.parquet", columns=cols).sort_values(cols[:2])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
