"""The serving log into training data: what serve writes, training reads (the feedback loop)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from table_parts import footer, names
from vidrec.config import FeatureConfig, sim_config
from vidrec.data.compact import GRACE_S, MERGED, MIN_PARTS, compact
from vidrec.data.ingest import FUTURE_SLACK_S, ingest
from vidrec.data.schema import check_tables
from vidrec.data.simulate import simulate
from vidrec.data.validate import open_dataset, scalar
from vidrec.errors import InvalidInput
from vidrec.features.training_set import build_training_set
from vidrec.serving.api import Context, Item, RecommendRequest, RecommendResponse
from vidrec.serving.feedback import ImpressionLog, Outcome

UNKNOWN_USER = 10**12


@pytest.fixture
def data(small_sim: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(small_sim, dst)
    return dst


def serve_log(
    data: Path,
    out: Path,
    requests: int = 20,
    ahead: dict[int, int] | None = None,
    flush_rows: int = 30,
) -> dict[str, int]:
    """What `vidrec serve` logs for `requests` slates of 5 after the data's end (one of them
    for a user the users table lacks; request i at time `ahead[i]` if given), the first
    video of each clicked: the real writer."""
    imp = pq.read_table(data / "impressions.parquet", columns=["user_id", "ts"])
    end = max(imp.column("ts").to_pylist())
    users = sorted(set(imp.column("user_id").to_pylist()))[:requests]
    videos = pq.read_table(data / "videos.parquet", columns=["video_id"]).column(0).to_pylist()
    log = ImpressionLog(out, flush_rows=flush_rows)  # several parts per table
    for i, user in enumerate(users):
        user = UNKNOWN_USER if i == 0 else user
        items = [Item(video_id=v, score=1.0 - p / 10, source="ranked", propensity=1.0)
                 for p, v in enumerate(videos[i : i + 5])]  # fmt: skip
        ts = (ahead or {}).get(i, end + 60 + i)
        req = RecommendRequest(user_id=user, k=5, context=Context(ts=ts, device="tv"))
        resp = RecommendResponse(request_id=f"r{i}", ts=ts, user_id=user,
                                 variant="champion", model_version="1", items=items)  # fmt: skip
        log.served(req, resp)
        log.feedback([Outcome(request_id=f"r{i}", video_id=items[0].video_id, clicked=True,
                              watch_seconds=30.0, ts=ts + 140)])  # fmt: skip
    log.flush()
    return {"impressions": 5 * requests, "watches": requests}


def clean_rows(data: Path) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    ds = open_dataset(data, FeatureConfig())
    rows = {t: scalar(ds.con, f"SELECT count(*) FROM {t}") for t in ("impressions", "watches")}
    return rows, ds.rejected


def test_the_serving_log_becomes_training_data_once(data: Path, tmp_path: Path) -> None:
    before, _ = clean_rows(data)
    logged = serve_log(data, tmp_path / "log")
    parts = {t: len(list((tmp_path / "log" / t).glob("*.parquet"))) for t in logged}
    assert parts["impressions"] >= 3, parts

    got = ingest(tmp_path / "log", data)
    assert got["refused"] == 0 and got["rows"] == sum(logged.values())
    for t, n in logged.items():
        assert got["tables"][t]["rows"] == n and got["tables"][t]["parts"] == parts[t]
        # the single file became a directory of parts: the data's, then the log's
        assert not (data / f"{t}.parquet").exists()
        assert (data / t / f"{t}.parquet").is_file()
    after, rejected = clean_rows(data)
    # every logged row reads back, but the unknown user's slate and click: counted, not lost
    assert after["impressions"] == before["impressions"] + logged["impressions"] - 5
    assert after["watches"] == before["watches"] + logged["watches"] - 1
    assert rejected["impressions"] == {"unknown_user": 5}
    assert rejected["watches"] == {"unknown_user": 1}

    again = ingest(tmp_path / "log", data)  # nothing new: nothing copied twice
    assert again["parts"] == 0 and again["tables"]["impressions"]["already"] == parts["impressions"]
    assert clean_rows(data)[0] == after
    # the training set's build reads the logged rows as any others
    built = build_training_set(data, tmp_path / "training.parquet", FeatureConfig())
    assert built["input_rows"]["impressions"] == after["impressions"]
    # a simulation into it would leave files beside the parts, which readers refuse
    with pytest.raises(InvalidInput, match=r"impressions: a directory of impressions parts"):
        simulate(sim_config("small", {"days": 1}), "none", 0, data)
    assert not (data / "impressions.parquet").exists()


def test_rows_from_the_future_stay_out_of_the_data(data: Path, tmp_path: Path) -> None:
    """A client may name any request time: one far ahead, once ingested, became the build's
    "now" (the newest fact) and moved every training window past the data."""
    before, _ = clean_rows(data)
    build_ts = build_training_set(data, tmp_path / "a.parquet", FeatureConfig())["build_ts"]
    soon = int(time.time()) + FUTURE_SLACK_S // 2  # clocks that disagree: kept
    far = {2: 253_402_300_000, 3: int(time.time()) + 2 * FUTURE_SLACK_S}  # year 9999
    serve_log(data, tmp_path / "log", requests=5, ahead={**far, 4: soon})
    got = ingest(tmp_path / "log", data)
    assert got["tables"]["impressions"]["future_rows"] == 10
    assert got["tables"]["watches"]["future_rows"] == 2 and got["future_rows"] == 12
    assert got["rows"] == 3 * 5 + 3 and got["refused"] == 0
    after, _ = clean_rows(data)  # request 0's user is unknown: 2 slates and clicks in
    assert after["impressions"] == before["impressions"] + 10
    assert after["watches"] == before["watches"] + 2
    assert pq.read_table(tmp_path / "log" / "impressions").num_rows == 25  # the log keeps all
    rebuilt = build_training_set(data, tmp_path / "b.parquet", FeatureConfig())
    assert build_ts < rebuilt["build_ts"] <= soon + 140 + 30


def test_a_part_with_a_wrong_schema_is_named_and_left_out(data: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    serve_log(data, log, requests=3)
    bad = log / "impressions" / "part-bad.parquet"
    pq.write_table(pa.table({"request_id": ["x"], "ts": [1]}), bad)  # a string id, no user
    (log / "watches" / "part-torn.parquet").write_bytes(b"PAR1 not a footer")
    (log / "impressions" / ".part-9.parquet.tmp").write_bytes(b"being written")
    got = ingest(log, data)
    refused = {x["file"]: x["error"] for r in got["tables"].values() for x in r["refused"]}
    assert got["refused"] == 2 and set(refused) == {
        str(bad),
        str(log / "watches/part-torn.parquet"),
    }
    assert "column 'request_id' must be int" in refused[str(bad)]
    assert "not readable Parquet" in refused[str(log / "watches/part-torn.parquet")]
    assert got["tables"]["impressions"]["rows"] == 15  # the good parts went in
    assert sorted(p.name for p in (data / "impressions").iterdir()) == [
        "impressions.parquet", *(f"log-{p.name}" for p in sorted(
            (log / "impressions").glob("part-[0-9]*.parquet")))]  # fmt: skip
    clean_rows(data)  # what went in reads


def test_a_move_cut_short_is_finished_and_bad_paths_named(data: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"--log: .*nope is not a directory"):
        ingest(tmp_path / "nope", data)
    (tmp_path / "log").mkdir()
    with pytest.raises(InvalidInput, match=r"no impressions\.parquet"):
        ingest(tmp_path / "log", tmp_path / "log")
    # a crash between the two renames: the table only under the hidden name
    staging = data / ".watches.ingest"
    staging.mkdir()
    (data / "watches.parquet").rename(staging / "watches.parquet")
    got = ingest(tmp_path / "log", data)  # an empty log: nothing to copy
    assert got["parts"] == 0 and not staging.exists()
    assert (data / "watches" / "watches.parquet").is_file()
    clean_rows(data)


def test_ingest_merges_many_small_parts_and_reads_every_row_once(
    data: Path, tmp_path: Path
) -> None:
    before, rejected_before = clean_rows(data)
    log = tmp_path / "log"
    logged = serve_log(data, log, requests=40, flush_rows=5)  # a part per 5 rows
    n = {t: len(names(log / t)) for t in logged}
    assert min(n.values()) >= MIN_PARTS, n

    got = ingest(log, data)
    imp = data / "impressions"
    merged = names(imp, f"{MERGED}*.parquet")
    assert got["tables"]["impressions"]["compacted"] == {"merged": n["impressions"], "into": 1,
                                                          "deleted": 0}  # fmt: skip
    assert got["tables"]["watches"]["compacted"]["merged"] == n["watches"]
    assert len(merged) == 1 and footer(imp / merged[0]) == [
        f"log-{p}" for p in names(log / "impressions")
    ]
    # the replaced parts are still there (a build may have listed them); readers skip them
    assert len(names(imp, "log-*.parquet")) == n["impressions"]
    assert [p.name for p in check_tables(data)["impressions"].parts] == [
        "impressions.parquet",
        *merged,
    ]
    after, rejected = clean_rows(data)
    assert after["impressions"] == before["impressions"] + logged["impressions"] - 5  # unknown user
    assert after["watches"] == before["watches"] + logged["watches"] - 1
    assert rejected["impressions"] == {**rejected_before["impressions"], "unknown_user": 5}

    # past the grace period the next run deletes them; their names stay ingested
    out = compact(imp, {p for p in names(log / "impressions")}, now=time.time() + GRACE_S + 60)
    assert out["deleted"] == n["impressions"] and names(imp, "log-*.parquet") == []
    again = ingest(log, data)
    assert again["tables"]["impressions"]["parts"] == 0
    assert again["tables"]["impressions"]["already"] == n["impressions"]
    assert clean_rows(data)[0] == after
