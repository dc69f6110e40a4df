"""The versions `vidrec serve` keeps loaded follow the route table: one it stops naming is
retired (its Ray Serve app and replica processes gone) after `serving.retire_after_s`, and
loaded again when named again, with traffic flowing and no request failing. This server
also logs a line per request (`serving.request_logs`; test_serving.py's does not)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving_server import start_server
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.routing import RouteTable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(served_models: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # retired once its calls have drained (deadline + 5 s), not after the default 300 s
    extra = "retire_after_s = 0\nrequest_logs = true"
    with start_server(served_models, "fused", name="versions", serving=extra) as s:
        yield s


def samples(s: dict[str, Any]) -> dict[str, float]:
    """The server's version metrics: `name` or `name{event}` -> value."""
    text = httpx.get(f"{s['url']}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for m in family.samples:
            if m.name.startswith(("vidrec_model_version", "vidrec_model_created")):
                label = m.labels.get("event") or m.labels.get("variant")
                out[m.name + (f"{{{label}}}" if label else "")] = m.value
    return out


def replicas(s: dict[str, Any], version: str) -> int:
    """Replica processes of `version`'s app under the server (Ray titles them so)."""
    title = f"ServeReplica:vidrec-v{version}:"
    kids = psutil.Process(s["proc"].pid).children(recursive=True)
    return sum(1 for p in kids if title in " ".join(_cmdline(p)))


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:  # exited while we looked
        return []


def wait_for(what: Callable[[], bool], timeout_s: float, why: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        if time.monotonic() > deadline:
            pytest.fail(f"not in {timeout_s} s: {why}")
        time.sleep(0.5)


def test_an_unnamed_version_is_retired_and_loaded_again_when_named(
    server: dict[str, Any],
) -> None:
    s, src = server, FileRouteSource(server["routes"])
    assert replicas(s, "2") == 2 and samples(s)["vidrec_model_versions_loaded"] == 2
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def drive() -> None:
        with httpx.Client(timeout=30) as client:
            u = 0
            while not stop.is_set():
                body = {"instances": [{"user_id": u % 500, "k": 5}]}
                r = client.post(f"{s['url']}/v1/models/vidrec:predict", json=body)
                results.append((r.status_code, r.json()["predictions"][0]["model_version"]
                                if r.is_success else r.text))  # fmt: skip
                u += 1
                time.sleep(0.05)

    worker = threading.Thread(target=drive)
    worker.start()
    try:
        src.set(RouteTable(champion="1"))
        wait_for(lambda: replicas(s, "2") == 0, 60, "version 2's replicas stopped")
        wait_for(lambda: samples(s)["vidrec_model_versions_loaded"] == 1, 10, "gauge")
        now = samples(s)
        assert now["vidrec_model_version_changes_total{retired}"] == 1
        # no challenger: its model age is gone with it (it would grow into a stale alert)
        assert "vidrec_model_created_timestamp_seconds{challenger}" not in now
        assert "vidrec_model_created_timestamp_seconds{champion}" in now
        # nor does any series of its own stay (each rollout would add a version's worth)
        text = httpx.get(f"{s['url']}/metrics", timeout=5).text
        assert not [ln for ln in text.splitlines() if 'version="2"' in ln], "v2's series"
        assert replicas(s, "1") == 2
        src.set(RouteTable(champion="1", challenger="2", canary_percent=100))
        wait_for(lambda: any(v == "2" for _, v in results[-5:]), 180, "version 2 serves again")
    finally:
        stop.set()
        worker.join()
        src.set(RouteTable(champion="1", challenger="2"))
    back = samples(s)
    assert back["vidrec_model_versions_loaded"] == 2
    assert "vidrec_model_created_timestamp_seconds{challenger}" in back
    assert back["vidrec_model_version_changes_total{loaded}"] == 1
    # request_logs: uvicorn's access line and KServe's timing lines, each request
    text = s["serve_log"].read_text()
    assert text.count('"POST /v1/models/vidrec%3Apredict HTTP/1.1" 200') >= len(results)
    assert text.count("kserve.io.v1.models.vidrec:predict") >= 2 * len(results)
    failed = [r for r in results if r[0] != 200]
    assert len(results) > 50 and not failed, failed[:5]
    assert {v for _, v in results} == {"1", "2"}
