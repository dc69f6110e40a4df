"""An open-loop HTTP load driver for the serving benchmark.

Request i is sent at t0 + i/rate whatever happened to the earlier ones, and its
latency is measured from that *scheduled* time, not from when it actually went
out. A closed-loop driver (send, wait, send) slows down with the server and so
hides its queueing ("coordinated omission"); here a server slower than the rate
shows as growing latency, and a client that cannot keep up shows as send lag.

The driver never raises for what the server or the network does: statuses are
counted by code, exceptions (refused connections, timeouts) by type name, and
requests over the in-flight limit are counted as dropped by the client. It
never retries: a retry would hide a failure inside a latency.

The client is aiohttp: on a 2-core machine the driver shares the cores with
the server it measures, and per request at 100/s httpx's async client spent
2.2-2.6 ms of CPU, aiohttp 0.8 ms (measured side by side against one server).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt

from vidrec.errors import InvalidInput

Send = Callable[[aiohttp.ClientSession, int], Awaitable[int]]  # -> the HTTP status


@dataclass(frozen=True, eq=False)  # eq=False: an array field has no single truth value
class LoadResult:
    """What one open-loop run measured; every count covers the measured part (after warm-up)."""

    rate: float  # scheduled requests per second
    duration_s: float  # scheduled span, warm-up included
    warmup_s: float
    scheduled: int  # measured requests scheduled: sent + dropped_client
    sent: int
    ok: int  # 2xx responses
    status: dict[int, int]  # HTTP status code -> responses
    errors: dict[str, int]  # exception type name -> requests that got no response
    dropped_client: int  # not sent: max_in_flight requests were already outstanding
    latencies_ms: npt.NDArray[np.float64]  # of the 2xx responses, from the scheduled send time
    achieved_rps: float  # 2xx completed / wall time of the measured part
    wall_s: float  # measured part: first scheduled send to the last completion
    max_send_lag_ms: float  # worst actual-minus-scheduled send time: the client's own backlog

    def summary(self) -> dict[str, Any]:
        """JSON-ready: percentiles in ms (None without any 2xx), status codes as strings."""
        pct = _percentiles(self.latencies_ms)
        return {
            "rate": self.rate,
            **pct,
            "achieved_rps": round(self.achieved_rps, 3),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "ok": self.ok,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "errors": dict(sorted(self.errors.items())),
            "dropped_client": self.dropped_client,
            "max_send_lag_ms": round(self.max_send_lag_ms, 3),
        }


def _percentiles(lat: npt.NDArray[np.float64]) -> dict[str, float | None]:
    keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    if len(lat) == 0:
        return dict.fromkeys(keys)
    values = [*np.percentile(lat, [50, 95, 99]), lat.max()]
    return {k: round(float(v), 3) for k, v in zip(keys, values, strict=True)}


def ratio(a: dict[str, Any], b: dict[str, Any], key: str = "p50_ms") -> float | None:
    """a[key] / b[key] of two summaries; None when either is missing or None, b is 0, or
    either run lost requests (its percentiles are of the answered ones alone)."""
    x, y = a.get(key), b.get(key)
    if x is None or y is None or y == 0 or failed(a) or failed(b):
        return None
    return float(x) / float(y)


def failed(run: dict[str, Any]) -> int:
    """Requests a run sent and got no answer to (0 for a run that does not count sends)."""
    return int(run.get("sent", 0)) - int(run.get("ok", run.get("sent", 0)))


def scheduled_count(rate: float, span_s: float) -> int:
    """How many i >= 0 have i/rate < span_s; rounded first, so 0.1 * 30 counts as 3."""
    return max(0, math.ceil(round(rate * span_s, 9)))


@dataclass
class _Run:
    """Mutable tallies of one run (the measured requests only)."""

    t0: float
    warm: int  # requests 0..warm-1 are warm-up
    in_flight: int = 0
    dropped: int = 0
    max_lag_s: float = 0.0
    last_done: float = 0.0

    def __post_init__(self) -> None:
        self.status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []


class Pending:
    """Tasks still running: a finished one is let go. Kept in a list until the end, a day of
    `vidrec traffic` at 20 requests/s held 1.7M finished tasks (about 1 GB)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed: list[BaseException] = []

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed.append(task.exception())  # type: ignore[arg-type]

    async def wait(self) -> None:
        """Until every task has finished; then the first failure, as gather raised it."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.failed:
            raise self.failed[0]


async def _one(run: _Run, send: Send, client: aiohttp.ClientSession, i: int, at: float) -> None:
    measured = i >= run.warm
    try:
        status = await send(client, i)
    except Exception as e:  # counted, never raised: the benchmark reports them
        if measured:
            run.errors[type(e).__name__] += 1
        return
    finally:
        run.in_flight -= 1
        if measured:
            run.last_done = max(run.last_done, time.perf_counter())
    if measured:
        run.status[status] += 1
        if 200 <= status < 300:
            run.latencies.append((time.perf_counter() - at) * 1000.0)


def _check(rate: float, duration_s: float, max_in_flight: int, warmup_s: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise InvalidInput(f"rate must be a positive number of requests/s, got {rate}", key="rate")
    if not duration_s > 0:
        raise InvalidInput(f"duration_s must be > 0, got {duration_s}", key="duration_s")
    if max_in_flight < 1:
        raise InvalidInput(f"max_in_flight must be >= 1, got {max_in_flight}", key="max_in_flight")
    if not 0 <= warmup_s < duration_s:
        raise InvalidInput(
            f"warmup_s must be >= 0 and < duration_s ({duration_s}), got {warmup_s}",
            key="warmup_s",
        )


async def open_loop(
    send: Send,
    rate: float,
    duration_s: float,
    *,
    max_in_flight: int = 512,
    timeout_s: float = 10.0,
    warmup_s: float = 0.0,
) -> LoadResult:
    """Send request i (`send(client, i)`) at t0 + i/rate for i/rate < duration_s, then await
    them all. Requests scheduled before `warmup_s` are sent but not counted."""
    _check(rate, duration_s, max_in_flight, warmup_s)
    total = scheduled_count(rate, duration_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    pending = Pending()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        run = _Run(t0=time.perf_counter(), warm=scheduled_count(rate, warmup_s))
        for i in range(total):
            at = run.t0 + i / rate
            # sleep(0) when behind schedule still yields, so started requests make progress
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            measured = i >= run.warm
            if measured:
                run.max_lag_s = max(run.max_lag_s, time.perf_counter() - at)
            if run.in_flight >= max_in_flight:
                run.dropped += 1 if measured else 0
                continue
            run.in_flight += 1  # here, not in the task: the next iteration must see it
            pending.start(_one(run, send, client, i, at))
        await pending.wait()
    return _result(run, rate, duration_s, warmup_s, total)


def _result(run: _Run, rate: float, duration_s: float, warmup_s: float, total: int) -> LoadResult:
    measured_start = run.t0 + run.warm / rate
    # the schedule's own span at least, so a run where nothing completed has a sane wall time
    wall = max(run.last_done, run.t0 + duration_s) - measured_start
    ok = sum(n for code, n in run.status.items() if 200 <= code < 300)
    scheduled = total - run.warm
    return LoadResult(
        rate=rate,
        duration_s=duration_s,
        warmup_s=warmup_s,
        scheduled=scheduled,
        sent=scheduled - run.dropped,
        ok=ok,
        status=dict(run.status),
        errors=dict(run.errors),
        dropped_client=run.dropped,
        latencies_ms=np.asarray(run.latencies, dtype=np.float64),
        achieved_rps=ok / wall if wall > 0 else 0.0,
        wall_s=wall,
        max_send_lag_ms=run.max_lag_s * 1000.0,
    )


def run_load(
    send: Send,
    rate: float,
    duration_s: float,
    *,
    max_in_flight: int = 512,
    timeout_s: float = 10.0,
    warmup_s: float = 0.0,
) -> LoadResult:
    """`open_loop` in a fresh event loop (not callable from inside a running one)."""
    return asyncio.run(
        open_loop(
            send,
            rate,
            duration_s,
            max_in_flight=max_in_flight,
            timeout_s=timeout_s,
            warmup_s=warmup_s,
        )
    )


def driver_pid() -> int:
    """Run in a load driver's process before measuring: it imports this module there (so a
    run's CPU holds no imports) and tells its pid (so its CPU can be told apart)."""
    return os.getpid()


@dataclass(frozen=True)
class V1Load:
    """One open-loop run of V1 recommendation requests, picklable: it runs in a child process
    so the driver never competes with the server it measures for one interpreter's GIL."""

    url: str  # .../v1/models/NAME:predict
    rate: float
    duration_s: float
    warmup_s: float
    ts: int  # request time of every request (the fresh pool is realistic at the log's end)
    users: int = 20_000  # user ids drawn from [0, users)
    seed: int = 7

    def __call__(self) -> dict[str, Any]:
        ids = np.random.default_rng(self.seed).integers(0, self.users, 100_000)

        async def send(client: aiohttp.ClientSession, i: int) -> int:
            body = {"instances": [{"user_id": int(ids[i]), "k": 10, "context": {"ts": self.ts}}]}
            async with client.post(self.url, json=body) as r:
                await r.read()
                return r.status

        summary: dict[str, Any] = run_load(
            send, self.rate, self.duration_s, warmup_s=self.warmup_s
        ).summary()
        return summary
