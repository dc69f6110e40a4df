"""`serving.replicas_per_version`: a version's model path runs in several Ray Serve
replicas, and the server keeps one call in flight per replica, so requests that arrive
together are ranked at the same time instead of one after the other."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from serving_server import start_server
from vidrec.serving.file_routes import write_atomic

pytestmark = pytest.mark.integration

DELAY_S = 1.0


@pytest.fixture(scope="module")
def replicated(served_models: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # a call per request, and a deadline the injected delay cannot reach
    extra = "replicas_per_version = 2\nmax_batch = 1\ndeadline_s = 10"
    with start_server(served_models, "fused", name="replicas", serving=extra) as s:
        yield s


def test_two_replicas_rank_two_requests_at_once(replicated: dict[str, Any]) -> None:
    s = replicated
    delay = {"stage": "ranking", "version": "1", "delay_s": DELAY_S}
    write_atomic(s["faults"], json.dumps({"faults": [delay]}))
    try:
        body = {"instances": [{"user_id": 3, "k": 5, "context": {"ts": s["ts"]}}]}
        url = f"{s['url']}/v1/models/vidrec:predict"
        with ThreadPoolExecutor(2) as pool:
            t0 = time.monotonic()
            answers = list(pool.map(lambda _: httpx.post(url, json=body, timeout=30), range(2)))
            took = time.monotonic() - t0
    finally:
        s["faults"].unlink()
    for r in answers:
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        assert not p["degraded"] and p["model_version"] == "1", p
        assert p["timings_s"]["retrieval"] >= 0
    # one replica would have ranked them one after the other: 2 x DELAY_S at least
    assert DELAY_S <= took < 1.8 * DELAY_S, took
