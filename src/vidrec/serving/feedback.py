"""Outcomes of served recommendations: joined to what was served, counted, logged.

The server remembers each served request (`vidrec.serving.served`: in this
process, bounded, or shared by the pods in Redis) so `POST /v1/feedback`
outcomes join to the variant, model version and position that produced them.
Every shown video goes to the impression log and every click to the watch log,
as parquet parts in the documented `impressions` and `watches` schemas (plus
variant and version columns): later training reads them like any other log.
Every ranked request's own model inputs (its user and context, `REQUEST_INPUTS`)
go to the `requests` table, which the drift monitor's sample-based mode reads.
An outcome that cannot be joined is rejected with its reason and counted, never
dropped silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from vidrec.config import Exact, Strict
from vidrec.features.definitions import REQUEST_INPUTS
from vidrec.serving.api import INT64_MAX, MAX_TS, RecommendRequest, RecommendResponse
from vidrec.serving.served import ServedRequest, ServedRequests
from vidrec.serving.served_memory import MemoryServed

MAX_OUTCOMES = 1000
# while the log cannot be written, each table keeps this many flushes' rows for the retry
BACKLOG_FLUSHES = 10
_TAGS = [("request_key", pa.string()), ("variant", pa.string()), ("model_version", pa.string())]
# the documented schemas (vidrec.data.schema), plus who served it: typed even when all null
SCHEMAS = {
    "impressions": pa.schema(
        [(c, pa.int64()) for c in ("request_id", "ts", "user_id", "video_id", "position")]
        + [("propensity", pa.float64()), ("device", pa.string()), ("session_position", pa.int64())]
        + _TAGS
        + [("source", pa.string()), ("score", pa.float64())]
    ),
    "requests": pa.schema(
        [(c, pa.int64()) for c in ("request_id", "ts")]
        + [("served_at", pa.float64()), ("user_id", pa.int64())]  # served_at: wall clock
        + _TAGS
        + [(n, pa.float64()) for n in REQUEST_INPUTS]
    ),
    "watches": pa.schema(
        [(c, pa.int64()) for c in ("request_id", "user_id", "video_id", "position", "start_ts")]
        + [("watch_seconds", pa.float64()), ("label_ts", pa.int64())]
        + _TAGS
    ),
}
Reason = Literal["unknown_request", "not_shown", "duplicate"]


class Outcome(Exact):
    request_id: str = Field(min_length=1, max_length=128, description="from the response")
    video_id: int = Field(ge=0, le=INT64_MAX)
    clicked: bool
    watch_seconds: float = Field(0.0, ge=0, le=86_400)
    ts: int | None = Field(None, ge=0, le=MAX_TS, description="when the outcome was known, epoch s")

    @model_validator(mode="after")
    def _watch_needs_click(self) -> Outcome:
        if self.watch_seconds > 0 and not self.clicked:
            raise ValueError("watch_seconds > 0 needs clicked = true")
        return self


class FeedbackRequest(Exact):
    outcomes: list[Outcome] = Field(min_length=1, max_length=MAX_OUTCOMES)


class Rejected(Strict):
    index: int
    request_id: str
    video_id: int
    reason: Reason


class FeedbackResult(Strict):
    accepted: int
    rejected: list[Rejected]


Answered = tuple[RecommendRequest, RecommendResponse, list[float] | None]  # inputs: if ranked


@dataclass(frozen=True)
class Joined:
    variant: str
    version: str
    outcome: Outcome
    user_id: int


def log_request_id(request_id: str) -> int:
    """The schema's integer request id for a served request's string id (stable)."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # non-negative int64


class ImpressionLog:
    def __init__(
        self,
        out: Path | None,
        remember: int = 100_000,
        flush_rows: int = 5_000,
        clock: Callable[[], float] = time.time,
        requests: ServedRequests | None = None,
        on_reject: Callable[[str, int], None] = lambda _table, _n: None,
        on_drop: Callable[[str, int], None] = lambda _table, _n: None,
    ) -> None:
        """`requests`: where served requests are kept for the join (default: the last
        `remember` in this process); `on_reject(table, rows)`: rows the log's schema could
        not hold; `on_drop(table, rows)`: rows let go while the log could not be written."""
        self.out, self.flush_rows, self.clock = out, flush_rows, clock
        self.requests = requests or MemoryServed(remember)
        self.on_reject, self.on_drop = on_reject, on_drop
        self.backlog_rows = BACKLOG_FLUSHES * flush_rows
        self.error: str | None = None  # why the last flush could not write, if it could not
        self._rows: dict[str, list[dict[str, Any]]] = {t: [] for t in SCHEMAS}
        self._part = itertools.count()

    def served(
        self, req: RecommendRequest, resp: RecommendResponse, inputs: list[float] | None = None
    ) -> None:
        """`inputs`: the request's REQUEST_INPUTS as ranked (none when degraded)."""
        self.served_all([(req, resp, inputs)])

    def served_all(self, answered: list[Answered]) -> None:
        """`served` for each of a call's answers (the store in one round trip)."""
        self.requests.remember([ServedRequest(resp.request_id, resp.ts, resp.user_id,
                                              resp.variant, resp.model_version,
                                              tuple(item.video_id for item in resp.items))
                                for _, resp, _ in answered])  # fmt: skip
        for req, resp, inputs in answered:
            self._log(req, resp, inputs)
        self._maybe_flush()

    def _log(
        self, req: RecommendRequest, resp: RecommendResponse, inputs: list[float] | None
    ) -> None:
        rid = log_request_id(resp.request_id)
        tags = _tags(resp.request_id, resp.variant, resp.model_version)
        for p, item in enumerate(resp.items):
            self._rows["impressions"].append(
                {
                    "request_id": rid,
                    "ts": resp.ts,
                    "user_id": resp.user_id,
                    "video_id": item.video_id,
                    "position": p,
                    "propensity": item.propensity,
                    "device": req.context.device,
                    "session_position": req.context.session_position,
                    **tags,
                    "source": item.source,
                    "score": item.score,
                }
            )
        if inputs:
            values = dict(zip(REQUEST_INPUTS, inputs, strict=True))
            self._rows["requests"].append({"request_id": rid, "ts": resp.ts,
                                           "served_at": self.clock(), "user_id": resp.user_id,
                                           **tags, **values})  # fmt: skip

    def feedback(self, outcomes: list[Outcome]) -> tuple[list[Joined], list[Rejected]]:
        ids = list(dict.fromkeys(o.request_id for o in outcomes))
        found = dict(zip(ids, self.requests.find(ids), strict=True))
        reasons = [_reason(found[o.request_id], o) for o in outcomes]
        valid = [i for i, r in enumerate(reasons) if r is None]
        pairs = [(outcomes[i].request_id, outcomes[i].video_id) for i in valid]
        for i, first in zip(valid, self.requests.first(pairs), strict=True):
            reasons[i] = None if first else "duplicate"
        joined, rejected = [], []
        for i, (o, reason) in enumerate(zip(outcomes, reasons, strict=True)):
            if reason is not None:
                rejected.append(Rejected(index=i, request_id=o.request_id, video_id=o.video_id,
                                         reason=reason))  # fmt: skip
                continue
            s = found[o.request_id]
            assert s is not None  # no reason: found and shown
            joined.append(Joined(s.variant, s.version, o, s.user_id))
            if o.clicked:
                self._rows["watches"].append(self._watch(s, o))
        self._maybe_flush()
        return joined, rejected

    def _watch(self, s: ServedRequest, o: Outcome) -> dict[str, Any]:
        start = s.ts + 1  # the click follows the slate
        known = o.ts if o.ts is not None else int(self.clock())
        return {
            "request_id": log_request_id(s.request_id),
            "user_id": s.user_id,
            "video_id": o.video_id,
            "position": s.videos.index(o.video_id),
            "start_ts": start,
            "watch_seconds": o.watch_seconds,
            "label_ts": max(known, start + math.ceil(o.watch_seconds)),
            **_tags(s.request_id, s.variant, s.version),
        }

    def _maybe_flush(self) -> None:
        # while writes fail, the server's tick retries: not every request, each paying for
        # the conversion of the whole backlog
        if self.error is None and max(len(r) for r in self._rows.values()) >= self.flush_rows:
            self.flush()

    def flush(self) -> dict[str, int]:
        """Write the buffered rows as new parquet parts; returns rows written per table.

        A table whose part cannot be written (a full disk, a directory it may not write)
        keeps its rows for the next flush, up to `backlog_rows`; older ones are let go and
        counted. Never raised: the requests that fill the buffer must not fail for it, nor
        the server's memory grow with it."""
        written, self.error = {}, None
        for table, rows in self._rows.items():
            written[table] = 0
            if not rows or self.out is None:
                rows.clear()
                continue
            try:
                written[table] = self._write(table, rows)
            except OSError as exc:
                self.error = f"{exc.filename or self.out / table}: {exc.strerror or exc}"
                if (excess := len(rows) - self.backlog_rows) > 0:
                    del rows[:excess]
                    self.on_drop(table, excess)
        return written

    def expire(self, max_age_s: float) -> dict[str, int]:
        """Delete the log's parts (every table's, whichever server wrote them) written more
        than `max_age_s` ago: its retention. Parts deleted per table."""
        deleted = dict.fromkeys(SCHEMAS, 0)
        if self.out is None:
            return deleted
        limit = self.clock() - max_age_s
        for table in SCHEMAS:
            for part in (self.out / table).glob("part-*.parquet"):
                with contextlib.suppress(FileNotFoundError):  # another server's expiry
                    if part.stat().st_mtime < limit:
                        part.unlink()
                        deleted[table] += 1
        return deleted

    def _write(self, table: str, rows: list[dict[str, Any]]) -> int:
        """One part of `rows` (cleared once it is written), its rejects set aside."""
        assert self.out is not None
        folder = self.out / table
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{next(self._part):05d}.parquet"
        # written aside and renamed: a reader listing the folder meanwhile (training, the
        # tests) saw a part without its footer and failed on it (CI, once)
        tmp = folder / f".{name}.tmp"
        data, bad = _arrow(table, rows)
        try:
            pq.write_table(data, tmp)
            os.replace(tmp, folder / name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        rows.clear()
        if bad:
            self._reject(table, bad)
        return data.num_rows

    def _reject(self, table: str, bad: list[tuple[dict[str, Any], str]]) -> None:
        """Rows the schema cannot hold: kept beside the log with why, counted, never written
        into it. One such row failed the whole table's every flush: nothing more was logged,
        and the request that filled the buffer next answered 500."""
        assert self.out is not None
        self.on_reject(table, len(bad))
        with open(self.out / f"{table}.rejected.jsonl", "ab") as f:
            for row, why in bad:
                f.write(orjson.dumps({"error": why, "row": row}, default=str) + b"\n")


def _arrow(
    table: str, rows: list[dict[str, Any]]
) -> tuple[pa.Table, list[tuple[dict[str, Any], str]]]:
    """The rows as the table's schema, and those it cannot hold (with the reason)."""
    schema = SCHEMAS[table]
    try:
        return pa.Table.from_pylist(rows, schema=schema), []
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        good, bad = [], []
        for row in rows:  # rare: find which
            try:
                pa.Table.from_pylist([row], schema=schema)
                good.append(row)
            except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
                bad.append((row, f"{type(exc).__name__}: {exc}"))
        return pa.Table.from_pylist(good, schema=schema), bad


def _reason(s: ServedRequest | None, o: Outcome) -> Reason | None:
    if s is None:
        return "unknown_request"
    return "not_shown" if o.video_id not in s.videos else None


def _tags(request_id: str, variant: str, version: str) -> dict[str, Any]:
    return {"request_key": request_id, "variant": variant, "model_version": version}
