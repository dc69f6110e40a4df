"""The open-loop load driver against a real HTTP server on loopback.

Every assertion holds by construction of the schedule and the server's sleeps
(lower bounds), never by how fast this machine happens to be.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import aiohttp
import numpy as np
import pytest

from vidrec.bench.load import (
    LoadResult,
    V1Load,
    open_loop,
    ratio,
    run_load,
    scheduled_count,
)
from vidrec.errors import InvalidInput


class _Handler(BaseHTTPRequestHandler):
    """/sleep?ms=N (optionally &serial=1: one request at a time) -> 200; /error -> 500."""

    serial = threading.Lock()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/error":
            self._reply(500)
            return
        delay = float(q.get("ms", ["0"])[0]) / 1000.0
        if q.get("serial") == ["1"]:
            with self.serial:
                time.sleep(delay)
        else:
            time.sleep(delay)
        self._reply(200)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posted.append((self.path, json.loads(body)))
        self._reply(200)

    posted: ClassVar[list[tuple[str, Any]]] = []  # (path, body) of every POST

    def _reply(self, code: int) -> None:
        body = b"{}"
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a burst of connects must not overflow the listen backlog


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def get(url: str):  # type: ignore[no-untyped-def]
    async def send(client: aiohttp.ClientSession, i: int) -> int:
        async with client.get(url) as r:
            return r.status

    return send


def test_schedule_counts_are_exact() -> None:
    assert scheduled_count(200, 0.5) == 100
    assert scheduled_count(30, 0.1 * 3) == 9  # 0.30000000000000004 s is 0.3 s
    assert scheduled_count(7, 1.0) == 7
    assert scheduled_count(3, 1.1) == 4  # 0, 1/3, 2/3, 1 s
    assert scheduled_count(100, 0.0) == 0


def test_sends_the_scheduled_count_and_counts_statuses(base: str) -> None:
    async def send(client: aiohttp.ClientSession, i: int) -> int:
        return await get(f"{base}/error" if i % 4 == 0 else f"{base}/sleep?ms=1")(client, i)

    r = run_load(send, rate=200, duration_s=0.5)
    assert (r.scheduled, r.sent, r.dropped_client) == (100, 100, 0)
    assert r.status == {200: 75, 500: 25} and r.ok == 75 and r.errors == {}
    assert len(r.latencies_ms) == 75 and (r.latencies_ms >= 1.0).all()
    s = r.summary()
    assert s["status"] == {"200": 75, "500": 25}  # string keys: orjson/JSON-ready
    assert s["sent"] == 100 and s["ok"] == 75
    assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["p50_ms"] == round(s["p50_ms"], 3)
    assert 0 < s["achieved_rps"] <= 75 / 0.5 + 1e-9  # 75 ok over >= the 0.5 s schedule


def test_all_errors_give_no_percentiles(base: str) -> None:
    r = run_load(get(f"{base}/error"), rate=40, duration_s=0.5)
    assert r.sent == 20 and r.ok == 0 and r.status == {500: 20}
    s = r.summary()
    assert [s[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")] == [None] * 4
    assert s["achieved_rps"] == 0.0


def test_latency_counts_from_the_scheduled_time_when_the_server_falls_behind(base: str) -> None:
    # one request at a time, 20 ms each (50/s) against 100/s: a queue builds up. Request k
    # cannot finish before 20(k+1) ms but was scheduled at 10k ms, so its latency is at least
    # 10k + 20 ms: the last is >= 510 ms. A closed-loop driver would report ~20 ms for all.
    r = run_load(get(f"{base}/sleep?ms=20&serial=1"), rate=100, duration_s=0.5)
    assert r.sent == 50 and r.ok == 50
    s = r.summary()
    assert s["max_ms"] > 490
    assert s["p99_ms"] > 400
    assert s["p50_ms"] > 150
    assert s["achieved_rps"] < 52  # the server's capacity, not the offered 100/s
    lat = r.latencies_ms
    assert np.mean(lat[-10:]) > np.mean(lat[:10]) + 100  # it grows along the run


def test_a_refused_port_counts_errors_and_returns(base: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = run_load(get(f"http://127.0.0.1:{port}/"), rate=50, duration_s=0.2, timeout_s=2.0)
    assert r.sent == 10 and r.ok == 0 and r.status == {}
    assert r.errors == {"ClientConnectorError": 10}
    s = r.summary()
    assert s["errors"] == {"ClientConnectorError": 10} and s["p99_ms"] is None


def test_requests_over_max_in_flight_are_dropped_not_queued(base: str) -> None:
    # 20 requests in 95 ms, each held 500 ms by the server: only the first 5 fit
    r = run_load(get(f"{base}/sleep?ms=500"), rate=200, duration_s=0.1, max_in_flight=5)
    assert (r.scheduled, r.sent, r.dropped_client, r.ok) == (20, 5, 15, 5)
    assert (r.latencies_ms >= 500).all()
    assert r.summary()["dropped_client"] == 15


def test_warmup_requests_are_sent_but_not_counted(base: str) -> None:
    seen: list[int] = []

    async def send(client: aiohttp.ClientSession, i: int) -> int:
        seen.append(i)
        return await get(f"{base}/sleep?ms=1")(client, i)

    r = run_load(send, rate=100, duration_s=0.5, warmup_s=0.2)
    assert sorted(seen) == list(range(50))  # all sent
    assert (r.scheduled, r.sent, r.ok) == (30, 30, 30)  # 20 warm-up ones left out
    assert len(r.latencies_ms) == 30


def test_a_raising_send_is_counted_by_type() -> None:
    async def send(client: aiohttp.ClientSession, i: int) -> int:
        if i % 2:
            raise TimeoutError("slow")
        raise ValueError("bad request builder")

    r = run_load(send, rate=100, duration_s=0.1)
    assert r.errors == {"ValueError": 5, "TimeoutError": 5} and r.ok == 0


def test_open_loop_runs_inside_a_caller_event_loop(base: str) -> None:
    async def caller() -> tuple[LoadResult, LoadResult]:
        a = open_loop(get(f"{base}/sleep?ms=1"), rate=50, duration_s=0.1)
        b = open_loop(get(f"{base}/error"), rate=50, duration_s=0.1)
        return await asyncio.gather(a, b)  # two drivers side by side in one loop

    a, b = asyncio.run(caller())
    assert (a.ok, a.status, b.ok, b.status) == (5, {200: 5}, 0, {500: 5})


def test_finished_tasks_are_let_go_and_a_failure_is_raised_at_the_end() -> None:
    """A day of `vidrec traffic` kept every finished task: about 1 GB."""
    from vidrec.bench.load import Pending

    async def one(i: int) -> None:
        await asyncio.sleep(0)
        if i == 500:
            raise ValueError("task 500")

    async def run() -> list[int]:
        pending, most = Pending(), []
        for i in range(1000):
            pending.start(one(i))
            await asyncio.sleep(0)
            most.append(len(pending.tasks))
        with pytest.raises(ValueError, match="task 500"):
            await pending.wait()
        return [*most, len(pending.tasks)]

    held = asyncio.run(run())
    assert max(held) <= 2 and held[-1] == 0


def test_ratio() -> None:
    assert ratio({"p50_ms": 30.0}, {"p50_ms": 10.0}) == 3.0
    assert ratio({"p99_ms": 5.0}, {"p99_ms": 10.0}, key="p99_ms") == 0.5
    assert ratio({"p50_ms": None}, {"p50_ms": 10.0}) is None
    assert ratio({"p50_ms": 1.0}, {"p50_ms": None}) is None
    assert ratio({"p50_ms": 1.0}, {"p50_ms": 0.0}) is None
    assert ratio({}, {"p50_ms": 1.0}) is None


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"rate": 0, "duration_s": 1}, "rate"),
        ({"rate": float("nan"), "duration_s": 1}, "rate"),
        ({"rate": 10, "duration_s": 0}, "duration_s"),
        ({"rate": 10, "duration_s": 1, "max_in_flight": 0}, "max_in_flight"),
        ({"rate": 10, "duration_s": 1, "warmup_s": 1}, "warmup_s"),
    ],
)
def test_bad_arguments_are_invalid_input(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(InvalidInput, match=key):
        run_load(get("http://127.0.0.1:9/"), **kwargs)  # type: ignore[arg-type]


def test_result_is_frozen() -> None:
    r = LoadResult(
        rate=1.0,
        duration_s=1.0,
        warmup_s=0.0,
        scheduled=0,
        sent=0,
        ok=0,
        status={},
        errors={},
        dropped_client=0,
        latencies_ms=np.array([]),
        achieved_rps=0.0,
        wall_s=1.0,
        max_send_lag_ms=0.0,
    )
    with pytest.raises(AttributeError):
        r.ok = 1  # type: ignore[misc]
    assert r.summary()["p50_ms"] is None


def test_a_v1_load_runs_in_its_own_process_and_sends_recommendation_requests(base: str) -> None:
    _Handler.posted.clear()
    load = V1Load(f"{base}/v1/models/m:predict", rate=40, duration_s=1.0, warmup_s=0.25, ts=123)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        summary = pool.submit(load).result(timeout=60)
    assert summary["scheduled"] == 30 and summary["ok"] == 30 and summary["status"] == {"200": 30}
    assert len(_Handler.posted) == 40  # warm-up requests are sent too
    for path, body in _Handler.posted:
        (instance,) = body["instances"]
        assert path == "/v1/models/m:predict" and instance["context"] == {"ts": 123}
        assert 0 <= instance["user_id"] < 20_000 and instance["k"] == 10


def test_a_server_slower_than_the_timeout_counts_timeouts(base: str) -> None:
    r = run_load(get(f"{base}/sleep?ms=600"), rate=50, duration_s=0.1, timeout_s=0.2)
    assert r.sent == 5 and r.ok == 0 and r.status == {}
    assert r.errors == {"TimeoutError": 5}
