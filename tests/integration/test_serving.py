"""`vidrec serve` as users run it: real Ray Serve behind the real KServe server, started once
as a subprocess on a trained registry (champion v1, challenger v2) and a materialised store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vidrec.config import FeatureConfig, Settings
from vidrec.data.validate import open_dataset
from vidrec.features.definitions import FEATURES
from vidrec.features.materialize import load_history, materialize
from vidrec.features.pit import PointInTime, as_of_value
from vidrec.features.store import open_store
from vidrec.features.training_set import default_build_ts
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.routing import RouteTable, assign
from vidrec.training.run import run_training

pytestmark = pytest.mark.integration
CONFIG = """
[registry]
root = "{root}"
[train]
validation_days = 1
test_days = 1
retrieval_epochs = 1
ranker_rounds = 30
eval_requests = 50
[gates]
baselines = []
min_gain_over_champion = -1.0
"""


@pytest.fixture(scope="module")
def server(small_sim: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serving")
    cfg_file = tmp / "cfg.toml"
    cfg_file.write_text(CONFIG.format(root=tmp / "registry"))
    from vidrec.config import load_settings

    settings: Settings = load_settings(cfg_file)
    for i in (1, 2):  # v1 becomes champion, v2 challenger
        run_training(settings, small_sim, run_dir=tmp / f"run{i}")
    store = f"sqlite:///{tmp / 'online.db'}"
    fcfg = FeatureConfig(online_store=store)
    ds = open_dataset(small_sim, fcfg)
    snap = as_of_value(fcfg.refresh_seconds, default_build_ts(ds))
    pit = PointInTime(ds.con, FEATURES, fcfg.last_n)
    st = open_store(store)
    materialize(pit, st, snap)
    load_history(ds.con, st, pit, snap)
    st.close()
    port = _free_port()
    routes = tmp / "serve" / "routes.json"
    env = {**os.environ, "HOME": str(tmp)}  # no stray ~/.ray/auth_token
    log = open(tmp / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidrec.cli", "serve", "--port", str(port), "--store", store,
         "--routes", str(routes), "--config", str(cfg_file), "--json"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, tmp / "serve.log")
        yield {"url": url, "routes": routes, "ts": snap, "proc": proc}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vidrec serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/models/vidrec/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"vidrec serve not ready in 240 s:\n{log.read_text()[-3000:]}")


def predict(s: dict[str, Any], *instances: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{s['url']}/v1/models/vidrec:predict", json={"instances": list(instances)}, timeout=30
    )


def test_v1_returns_ranked_videos_with_variant_and_version(server: dict[str, Any]) -> None:
    r = predict(server, {"user_id": 3, "k": 7, "context": {"ts": server["ts"]}})
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert p["user_id"] == 3 and len(p["items"]) == 7 and p["variant"] == "champion"
    assert p["model_version"] == "1" and p["request_id"] and not p["degraded"]
    assert len({i["video_id"] for i in p["items"]}) == 7


def test_v2_open_inference_protocol(server: dict[str, Any]) -> None:
    body = {
        "id": "req-9",
        "inputs": [
            {
                "name": "request",
                "shape": [2],
                "datatype": "BYTES",
                "data": [json.dumps({"user_id": 5, "k": 3}), json.dumps({"user_id": 6, "k": 4})],
            }
        ],
    }
    r = httpx.post(f"{server['url']}/v2/models/vidrec/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-9" and out["outputs"][0]["name"] == "response"
    answers = [json.loads(x) for x in out["outputs"][0]["data"]]
    assert [len(a["items"]) for a in answers] == [3, 4]
    meta = httpx.get(f"{server['url']}/v2/models/vidrec", timeout=5).json()
    assert meta["inputs"][0]["name"] == "request"
    assert httpx.get(f"{server['url']}/v2/health/live", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"instances": [{"user_id": 3, "k":', 400, "Unrecognized request format"),
        (b'{"rows": []}', 400, "instances"),
        (b'{"instances": [{"user_id": 3, "k": 0}]}', 422, "instances[0]: k"),
        (b'{"instances": [{"user_id": 3, "k": 501}]}', 422, "less than or equal to 500"),
        (b'{"instances": [{"user_id": -1}]}', 422, "instances[0]: user_id"),
        (b'{"instances": [{"user_id": 3, "colour": "red"}]}', 422, "colour"),
        (b'{"instances": []}', 400, "no instances"),
        (json.dumps({"instances": [{"user_id": 1}] * 65}).encode(), 413, "at most 64"),
        (json.dumps({"instances": [{"user_id": 1, "x": "a" * 300_000}]}).encode(), 413, ""),
    ],
)
def test_bad_input_gets_a_4xx_that_says_what(
    server: dict[str, Any], body: bytes, status: int, says: str
) -> None:
    r = httpx.post(
        f"{server['url']}/v1/models/vidrec:predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status, r.text
    assert says in r.text


def test_an_unknown_user_is_served(server: dict[str, Any]) -> None:
    r = predict(server, {"user_id": 10**12, "k": 5})
    assert r.status_code == 200 and len(r.json()["predictions"][0]["items"]) == 5


def test_canary_weight_changes_live_and_is_sticky(server: dict[str, Any]) -> None:
    src = FileRouteSource(server["routes"])
    base = src.get()
    assert base.champion == "1" and base.challenger == "2"
    table = src.set(base.model_copy(update={"canary_percent": 30.0}), expected_version=base.version)
    users = list(range(200))
    time.sleep(0.2)
    got = {u: predict(server, {"user_id": u, "k": 3}).json()["predictions"][0] for u in users}
    want = {u: assign(RouteTable(**table.model_dump()), u) for u in users}
    assert {u: p["variant"] for u, p in got.items()} == want
    assert all(
        p["model_version"] == ("2" if want[u] == "challenger" else "1") for u, p in got.items()
    )
    src.set(table.model_copy(update={"canary_percent": 0.0}))


def test_metrics_are_on_the_scraped_port(server: dict[str, Any]) -> None:
    predict(server, {"user_id": 11, "k": 5})
    text = httpx.get(f"{server['url']}/metrics", timeout=5).text
    assert 'vidrec_requests_total{code="200",variant="champion"}' in text
    for stage in ("retrieval", "features", "ranking", "total"):
        assert f'stage="{stage}"' in text
    assert 'vidrec_requests_total{code="422",variant="none"}' in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
