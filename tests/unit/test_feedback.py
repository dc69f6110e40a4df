"""Feedback joins to what was served; the impression and watch logs read like any log."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from vidrec.data.schema import IMPRESSIONS, WATCHES, check_schema
from vidrec.features.definitions import REQUEST_INPUTS
from vidrec.serving.api import Item, RecommendRequest, RecommendResponse
from vidrec.serving.feedback import FeedbackRequest, ImpressionLog, Outcome, log_request_id


def served(rid: str, videos: list[int], variant: str = "champion") -> RecommendResponse:
    items = [Item(video_id=v, score=1.0 / (i + 1), source="ranked", propensity=1.0)
             for i, v in enumerate(videos)]  # fmt: skip
    return RecommendResponse(
        request_id=rid, ts=1000, user_id=7, variant=variant, model_version="3", items=items
    )


def test_outcomes_join_or_are_rejected_with_a_reason(tmp_path: Path) -> None:
    log = ImpressionLog(tmp_path, clock=lambda: 5000.0)
    inputs = [float(i) for i in range(len(REQUEST_INPUTS))]
    log.served(RecommendRequest(user_id=7), served("a", [10, 11, 12], "challenger"), inputs)
    log.served(RecommendRequest(user_id=8), served("degraded", [10]))  # no inputs: not logged
    joined, rejected = log.feedback(
        [
            Outcome(request_id="a", video_id=11, clicked=True, watch_seconds=30.0),
            Outcome(request_id="a", video_id=12, clicked=False),
            Outcome(request_id="a", video_id=11, clicked=True, watch_seconds=5.0),
            Outcome(request_id="zz", video_id=11, clicked=True),
            Outcome(request_id="a", video_id=99, clicked=True),
        ]
    )
    assert [(j.variant, j.version, j.outcome.video_id) for j in joined] == [
        ("challenger", "3", 11),
        ("challenger", "3", 12),
    ]
    assert [(r.index, r.reason) for r in rejected] == [
        (2, "duplicate"),
        (3, "unknown_request"),
        (4, "not_shown"),
    ]
    assert log.flush() == {"impressions": 4, "requests": 1, "watches": 1}
    imp = pq.read_table(tmp_path / "impressions")
    wat = pq.read_table(tmp_path / "watches")
    check_schema(imp.schema, IMPRESSIONS, "impressions")
    check_schema(wat.schema, WATCHES, "watches")
    assert imp.column("position").to_pylist() == [0, 1, 2, 0]
    (r,) = pq.read_table(tmp_path / "requests").to_pylist()
    assert r["request_id"] == log_request_id("a") and r["variant"] == "challenger"
    assert [r[n] for n in REQUEST_INPUTS] == inputs
    rids = {log_request_id(k) for k in ("a", "degraded")}
    assert set(imp.column("request_id").to_pylist()) == rids
    (w,) = wat.to_pylist()
    assert w["video_id"] == 11 and w["position"] == 1 and w["watch_seconds"] == 30.0
    assert w["start_ts"] == 1001 and w["label_ts"] == 5000 and w["variant"] == "challenger"


def test_a_row_the_log_cannot_hold_is_set_aside_and_the_rest_written(tmp_path: Path) -> None:
    """One such row failed the table's every flush: nothing more was logged, and the request
    that next filled the buffer answered 500."""
    counted: list[tuple[str, int]] = []
    log = ImpressionLog(tmp_path, on_reject=lambda t, n: counted.append((t, n)))
    log.served(RecommendRequest(user_id=7), served("a", [10, 11]))
    bad = served("b", [12]).model_copy(update={"ts": 2**63})  # past int64
    log.served(RecommendRequest(user_id=7), bad)
    assert log.flush() == {"impressions": 2, "requests": 0, "watches": 0}
    assert counted == [("impressions", 1)]
    assert pq.read_table(tmp_path / "impressions").column("video_id").to_pylist() == [10, 11]
    (line,) = (tmp_path / "impressions.rejected.jsonl").read_text().splitlines()
    assert '"OverflowError' in line and '"video_id":12' in line
    log.served(RecommendRequest(user_id=7), served("c", [13]))  # the log goes on
    assert log.flush()["impressions"] == 1 and counted == [("impressions", 1)]


def test_a_log_that_cannot_be_written_keeps_a_backlog_and_never_fails_a_request(
    tmp_path: Path,
) -> None:
    """A full disk or an unwritable directory raised from the request that filled the
    buffer (a 500 for each after it) while the buffer grew without bound."""
    out = tmp_path / "log"
    out.write_text("a file where the log's directory goes")
    dropped: list[tuple[str, int]] = []
    log = ImpressionLog(out, flush_rows=4, on_drop=lambda t, n: dropped.append((t, n)))
    for i in range(30):  # 60 rows: the requests that fill the buffer are answered
        log.served(RecommendRequest(user_id=7), served(f"r{i}", [2 * i, 2 * i + 1]))
    assert log.error is not None and str(out) in log.error
    assert log.flush() == {"impressions": 0, "requests": 0, "watches": 0}
    assert dropped == [("impressions", 60 - log.backlog_rows)] and log.backlog_rows == 40
    out.unlink()  # writable again: the backlog is written, newest rows kept
    assert log.flush()["impressions"] == 40 and log.error is None
    kept = pq.read_table(out / "impressions").column("video_id").to_pylist()
    assert kept == list(range(20, 60))


def test_outcome_ids_and_times_stay_in_the_log_s_range() -> None:
    for field, value in (("video_id", 2**63), ("ts", 253_402_300_800)):
        with pytest.raises(ValidationError, match=field):
            Outcome.model_validate({"request_id": "a", "video_id": 1, "clicked": True,
                                    field: value})  # fmt: skip


def test_old_requests_are_forgotten_and_counted() -> None:
    log = ImpressionLog(None, remember=2)
    for rid in ("a", "b", "c"):
        log.served(RecommendRequest(user_id=7), served(rid, [1]))
    _, rejected = log.feedback([Outcome(request_id="a", video_id=1, clicked=True)])
    assert [r.reason for r in rejected] == ["unknown_request"] and log.requests.forgotten == 1


def test_bad_outcomes_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="watch_seconds"):
        Outcome(request_id="a", video_id=1, clicked=False, watch_seconds=3.0)
    with pytest.raises(ValidationError, match="outcomes"):
        FeedbackRequest(outcomes=[])


def test_a_remembered_request_costs_the_collector_one_object() -> None:
    """The log keeps up to 100k requests, and a full collection walks each tracked object
    they hold: as request and response models (29 each) those pauses stalled serving."""
    log = ImpressionLog(None, flush_rows=10**9)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(500):
        log.served(RecommendRequest(user_id=7), served(f"r{i}", [10 + i, 11 + i, 12 + i]))
    log.flush()  # the buffered log rows go; what is remembered stays
    gc.collect()
    assert len(gc.get_objects()) - before <= 500 * 1.2


def test_a_part_appears_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers list the folder while the server writes: each part is written aside (a hidden
    name readers skip) and renamed into place."""
    seen: list[list[str]] = []
    write = pq.write_table

    def watched(table: object, where: Path) -> None:
        write(table, where)
        seen.append(sorted(p.name for p in where.parent.iterdir() if not p.name.startswith(".")))

    monkeypatch.setattr(pq, "write_table", watched)
    log = ImpressionLog(tmp_path, clock=lambda: 5000.0)
    log.served(RecommendRequest(user_id=7), served("a", [10, 11]), [0.0] * len(REQUEST_INPUTS))
    log.flush()
    assert seen and all(names == [] for names in seen)  # nothing visible while written
    parts = sorted(p.name for p in (tmp_path / "impressions").iterdir())
    assert len(parts) == 1 and parts[0].endswith(".parquet") and not parts[0].startswith(".")
    assert pq.read_table(tmp_path / "impressions").num_rows == 2


def test_the_log_keeps_parts_for_its_retention_only(tmp_path: Path) -> None:
    now = 10 * 86_400.0
    log = ImpressionLog(tmp_path, clock=lambda: now)
    log.served(RecommendRequest(user_id=7), served("a", [10, 11]), [0.0] * len(REQUEST_INPUTS))
    log.flush()
    log.served(RecommendRequest(user_id=7), served("b", [12]), [0.0] * len(REQUEST_INPUTS))
    log.flush()
    old, new = sorted((tmp_path / "impressions").glob("part-*.parquet"))
    os.utime(old, (now - 3 * 86_400, now - 3 * 86_400))
    (tmp_path / "impressions" / "mine.parquet").write_bytes(b"not the server's")
    os.utime(tmp_path / "impressions" / "mine.parquet", (0, 0))
    assert log.expire(2 * 86_400) == {"impressions": 1, "requests": 0, "watches": 0}
    assert sorted(p.name for p in (tmp_path / "impressions").iterdir()) == [
        "mine.parquet",
        new.name,
    ]
    assert log.expire(2 * 86_400) == dict.fromkeys(("impressions", "requests", "watches"), 0)
    assert ImpressionLog(None).expire(0.001) == dict.fromkeys(
        ("impressions", "requests", "watches"), 0
    )
