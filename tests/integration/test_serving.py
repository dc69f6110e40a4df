"""`vidrec serve` as users run it: real Ray Serve behind the real KServe server, started once
as a subprocess on a trained registry (champion v1, challenger v2) and a materialised store.

Faults (a slow ranker, a crashed replica) are injected through the server's `--faults` file;
every test that changes the route table or the faults puts them back."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from helpers import wait_for
from serving_server import start_server
from vidrec.config import FeatureConfig, ServingConfig
from vidrec.data.schema import IMPRESSIONS, WATCHES, check_schema
from vidrec.data.validate import open_dataset, scalar
from vidrec.serving.file_routes import FileRouteSource, write_atomic
from vidrec.serving.routing import RouteTable, assign
from vidrec.traffic.replay import replay
from vidrec.traffic.summary_lines import render
from vidrec.traffic.users import SimulatedUsers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(served_models: dict[str, Any]) -> Iterator[dict[str, Any]]:
    with start_server(served_models, "fused") as s:
        yield s


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
    # no Python warning in the server's log (kserve's ORJSONResponse raised one per server)
    assert not re.findall(r"\.py:\d+: \w*Warning: .*", server["serve_log"].read_text())


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
        # JSON's types as sent: no true for a k of 1, no "3" for user 3, no 3.0 for an id
        (b'{"instances": [{"user_id": 3, "k": true}]}', 422, "instances[0]: k: Input should"),
        (b'{"instances": [{"user_id": "3"}]}', 422, "instances[0]: user_id: Input should"),
        (b'{"instances": [{"user_id": 3.0}]}', 422, "instances[0]: user_id: Input should"),
        (b'{"instances": [{"user_id": 3, "context": {"device": 5}}]}', 422, "context.device"),
        # past int64 (or, for a time, year 9999): the log could not hold the row, and every
        # later flush of it failed
        (b'{"instances": [{"user_id": 9223372036854775808}]}', 422, "instances[0]: user_id"),
        (b'{"instances": [{"user_id": 3, "context": {"ts": 9223372036854775808}}]}', 422, "ts"),
        (b'{"instances": [{"user_id": 3, "context": {"ts": 253402300800}}]}', 422, "context.ts"),
        # an empty id was replaced by a new one: the client's outcomes would name ""
        (b'{"instances": [{"user_id": 3, "request_id": ""}]}', 422, "instances[0]: request_id"),
        (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "depth limit exceeded"),
        (b'{"instances": []}', 400, "no instances"),
        (json.dumps({"instances": [{"user_id": 1}] * 65}).encode(), 413, "at most 64"),
        (json.dumps({"instances": [{"user_id": 1, "x": "a" * 300_000}]}).encode(), 413, "256 KiB"),
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
    assert r.json()["status"] == status and says in r.json()["message"], r.text


def test_errors_outside_vidrec_s_code_are_counted_for_posted_requests_only(
    server: dict[str, Any],
) -> None:
    series = ['vidrec_errors_total{type="HttpError"}', 'vidrec_errors_total{type="NotFound"}']
    before = [_metric(server, x) for x in series]
    for method in ("GET", "POST"):  # a probe or metadata read is not a failed request
        httpx.request(method, f"{server['url']}/v1/no-such-path", timeout=5)
        httpx.request(method, f"{server['url']}/v1/models/nope:predict", timeout=5)
    assert [_metric(server, x) - b for x, b in zip(series, before, strict=True)] == [1, 1]


def test_a_body_sent_in_chunks_is_refused_at_the_limit(server: dict[str, Any]) -> None:
    def chunks(n: int) -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"instances": [{"user_id": 1, "x": "'
        yield from [b"a" * 1024] * n
        yield b'"}]}'

    url = f"{server['url']}/v1/models/vidrec:predict"
    headers = {"content-type": "application/json"}
    r = httpx.post(url, content=chunks(300), headers=headers, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    r = httpx.post(url, content=chunks(10), headers=headers, timeout=30)  # under it: read
    assert r.status_code == 422 and "instances[0]: x" in r.json()["message"], r.text


def v2_request(data: list[Any], shape: list[int] | None = None, **over: Any) -> dict[str, Any]:
    one = {"name": "request", "shape": shape or [len(data)], "datatype": "BYTES", "data": data}
    return {"inputs": [{**one, **over}]}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (v2_request(["{}"], name="req"), 400, "missing input 'request'"),
        (v2_request(["not json"]), 400, "is not JSON"),
        # an object inline, not in a string: "not JSON" before (Python's repr of it)
        (v2_request([{"user_id": 3}]), 422, "element 0 is a JSON object, not a string"),
        (v2_request([3]), 422, "element 0 is a JSON number, not a string"),
        (v2_request([1.0], datatype="FP32"), 422, "is FP32, not BYTES"),
        (v2_request(['{"user_id": 3}'], shape=[2]), 422, "shape [2] but 1 elements"),
        (v2_request(['{"user_id": 3, "k": 0}']), 422, "instances[0]: k"),
        # KServe's typed route rejects these before our parser: the answer is ours all the same
        ({}, 422, "infer: inputs: Field required"),
        ({"inputs": [{"name": "request"}]}, 422, "infer: inputs.0.shape: Field required"),
        (b'{"inputs": [', 400, "body is not JSON"),
        # what the body holds besides the one input is refused, never ignored
        (
            {
                "inputs": [
                    *v2_request(['{"user_id": 3}'])["inputs"],
                    {"name": "extra", "shape": [1], "datatype": "INT64", "data": [1]},
                ]
            },
            422,
            "input 'extra' is not one this model takes",
        ),
        ({"inputs": v2_request(['{"user_id": 3}'])["inputs"] * 2}, 422, "'request' is given twice"),
        (
            {**v2_request(['{"user_id": 3}']), "outputs": [{"name": "scores"}]},
            422,
            "output 'scores' is not one this model answers",
        ),
        (v2_request(["[" * 5000 + "]" * 5000]), 400, "element 0 is not JSON"),
        (v2_request(['{"user_id": 3, "k": "2"}']), 422, "instances[0]: k: Input should"),
        ([], 422, "infer: (root): Input should be a valid dictionary"),
    ],
)
def test_bad_v2_input_gets_a_4xx_that_says_what(
    server: dict[str, Any], body: Any, status: int, says: str
) -> None:
    url = f"{server['url']}/v2/models/vidrec/infer"
    if isinstance(body, bytes):
        r = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    else:
        r = httpx.post(url, json=body, timeout=30)
    assert r.status_code == status, r.text
    assert says in r.json()["message"], r.text


@pytest.mark.parametrize(
    ("method", "path", "body", "error", "says"),
    [
        # refused by Starlette (its own answer is {"detail": ...})
        (
            "POST",
            "/v2/models/vidrec/infer",
            b'{"inputs": "\xff"}',
            "http_error",
            "parsing the body",
        ),
        ("GET", "/v1/feedback", None, "http_error", "GET /v1/feedback: Method Not Allowed"),
        # KServe's GET /v1/models/{name} would take "vidrec:predict" for a model's name (404)
        ("GET", "/v1/models/vidrec:predict", None, "http_error", "Method Not Allowed"),
        ("POST", "/v1/no-such-path", b"{}", "http_error", "Not Found"),
        # refused by KServe (its own answer is {"error": "<message>"})
        ("POST", "/v1/models/vidrec:predict", b'{"instances": "\xff"}', "invalid_input", "format"),
        ("POST", "/v1/models/nope:predict", b'{"instances": []}', "not_found", "nope"),
        ("GET", "/v2/models/nope/ready", None, "not_found", "nope"),
    ],
)
def test_what_kserve_and_the_http_layer_refuse_answers_in_vidrec_s_shape(
    server: dict[str, Any], method: str, path: str, body: bytes | None, error: str, says: str
) -> None:
    headers = {"content-type": "application/json"}
    r = httpx.request(method, server["url"] + path, content=body, headers=headers, timeout=30)
    out = r.json()
    assert 400 <= r.status_code < 500 and out["status"] == r.status_code, r.text
    assert out["error"] == error and says in out["message"], r.text
    if out["status"] == 405:
        assert "POST" in r.headers["allow"]


def test_a_json_body_declared_as_another_media_type_is_415_naming_the_header(
    server: dict[str, Any],
) -> None:
    url, body = f"{server['url']}/v1/models/vidrec:predict", b'{"instances": [{"user_id": 3}]}'
    for declared in ("application/x-www-form-urlencoded", "text/plain"):  # curl -d's, and plain
        r = httpx.post(url, content=body, headers={"content-type": declared}, timeout=30)
        assert r.status_code == 415, r.text
        assert "Content-Type: application/json" in r.json()["message"] and declared in r.text
    r = httpx.post(url, content=body, timeout=30)  # none declared: KServe reads it as JSON
    assert r.status_code == 200 and "content-type" not in r.request.headers, r.text


def test_an_unknown_user_is_served(server: dict[str, Any]) -> None:
    r = predict(server, {"user_id": 10**12, "k": 5})
    assert r.status_code == 200 and len(r.json()["predictions"][0]["items"]) == 5


def test_canary_is_sticky_and_monotone_in_weight(server: dict[str, Any]) -> None:
    users = list(range(300))
    cohorts = []
    with routes(server) as table:
        assert table.champion == "1" and table.challenger == "2"
        for weight in (10.0, 30.0, 60.0):
            live = set_routes(server, canary_percent=weight)
            got = {u: recommend(server, u) for u in users}
            want = {u: assign(live, u) for u in users}
            assert {u: p["variant"] for u, p in got.items()} == want
            assert all(p["model_version"] == ("2" if want[u] == "challenger" else "1")
                       for u, p in got.items())  # fmt: skip
            cohorts.append({u for u in users if want[u] == "challenger"})
    assert cohorts[0] < cohorts[1] < cohorts[2]  # raising the weight only adds users
    assert len(cohorts[0]) > 10 and len(cohorts[2]) < len(users)


def test_a_route_table_naming_an_unloaded_model_is_503(server: dict[str, Any]) -> None:
    with routes(server):
        set_routes(server, champion="99", challenger="2")
        r = predict(server, {"user_id": 4})
        assert r.status_code == 503 and "model version 99" in r.text, r.text
    assert predict(server, {"user_id": 4}).status_code == 200


def test_a_route_table_broken_by_hand_changes_nothing_and_says_so(
    server: dict[str, Any],
) -> None:
    """A typo in the table answered every request with a 422 (the client's fault, it said)."""
    invalid = "vidrec_route_table_invalid"
    with routes(server):
        table = set_routes(server, challenger="2", canary_percent=50.0)
        before = {u: recommend(server, u)["variant"] for u in range(12)}
        assert set(before.values()) == {"champion", "challenger"}
        try:
            write_atomic(server["routes"], '{"champion": "2", "canary_percent": 200')
            assert {u: recommend(server, u)["variant"] for u in range(12)} == before
            wait_for("the gauge says so", lambda: _metric(server, invalid) == 1, 15)
        finally:
            write_atomic(server["routes"], table.model_dump_json())  # fixed by hand
        wait_for("the gauge clears", lambda: _metric(server, invalid) == 0, 15)


def test_requests_before_the_model_is_loaded_get_503(server: dict[str, Any]) -> None:
    statuses = {r.status_code for r in server["early"]}
    assert statuses == {503}, [r.text for r in server["early"]]
    assert all("not ready" in r.text for r in server["early"])


def test_the_server_is_ready_only_when_its_model_is(server: dict[str, Any]) -> None:
    # KServe's own /v2/health/ready says ready as soon as it listens
    assert server["early_health"] and set(server["early_health"]) == {503}, server["early_health"]
    r = httpx.get(f"{server['url']}/v2/health/ready", timeout=5)
    assert r.status_code == 200 and r.json()["ready"] is True, r.text


def test_a_slow_ranker_degrades_to_the_fallback(server: dict[str, Any]) -> None:
    with faults(server, {"stage": "ranking", "version": "1", "delay_s": 1.0}):
        answers = [recommend(server, u) for u in range(5)]
    assert all(p["degraded"] and p["reason"] == "deadline" for p in answers)
    assert all(len(p["items"]) == 10 and p["items"][0]["source"] == "fallback" for p in answers)
    text = httpx.get(f"{server['url']}/metrics", timeout=5).text
    assert 'vidrec_degraded_responses_total{reason="deadline",variant="champion"}' in text
    assert _recovers(server)


def test_a_crashed_replica_degrades_then_recovers(server: dict[str, Any]) -> None:
    with faults(server, {"stage": "ranking", "version": "1", "crash": True}):
        answers = [recommend(server, u) for u in range(20)]  # every one a 200
    degraded = [p for p in answers if p["degraded"]]
    assert degraded and all(p["items"][0]["source"] == "fallback" for p in degraded)
    assert _recovers(server)  # Ray Serve replaced the dead replica


def test_shadow_never_delays_or_changes_the_response(server: dict[str, Any]) -> None:
    outcome = 'vidrec_shadow_requests_total{{outcome="{}"}}'.format
    before = {o: _metric(server, outcome(o)) for o in ("compared", "degraded")}
    calls = {kind: f'vidrec_model_call_requests_sum{{call="{kind}",version="2"}}'
             for kind in ("served", "shadow")}  # fmt: skip
    sent = {kind: _metric(server, series) for kind, series in calls.items()}
    with routes(server):
        set_routes(server, canary_percent=0.0, shadow_fraction=1.0)
        with faults(server, {"stage": "ranking", "version": "2", "delay_s": 2.0}):
            for u in range(10):
                t0 = time.monotonic()
                p = recommend(server, u)
                assert time.monotonic() - t0 < 1.5  # not waiting for the 2 s challenger
                assert p["variant"] == "champion" and not p["degraded"]
            # the fault stays until the slow shadow calls are booked: they leave after their
            # linger and run at idle priority, so they may reach ranking after the last answer
            wait_for("a degraded shadow call", lambda: _metric(server, outcome("degraded"))
                     > before["degraded"], 30)  # fmt: skip
        # the slow shadow calls may still hold the challenger's replica: keep sending
        deadline, u = time.monotonic() + 60, 10
        while _metric(server, outcome("compared")) < before["compared"] + 5:
            assert time.monotonic() < deadline, "shadow comparisons never reached /metrics"
            assert recommend(server, u)["variant"] == "champion"
            u += 1
            time.sleep(0.2)
    # the challenger's calls were all shadow calls, counted apart from served ones
    assert _metric(server, calls["shadow"]) - sent["shadow"] >= 5  # the compared ones, at least
    assert _metric(server, calls["served"]) == sent["served"]
    text = httpx.get(f"{server['url']}/metrics", timeout=5).text
    assert 'vidrec_shadow_overlap_ratio_count{version="2"}' in text
    assert 'vidrec_request_duration_seconds_count{stage="ranking",variant="shadow"}' in text
    # metrics count a comparison as it completes; its log line is written at the next tick
    shadow_log = server["log_dir"] / "shadow.jsonl"
    logged = wait_for("shadow.jsonl", lambda: shadow_log.exists() and shadow_log.read_text(), 10)
    lines = [json.loads(x) for x in logged.splitlines()]
    assert lines and all(len(x["served"]) == 10 and len(x["shadow"]) == 10 for x in lines)
    assert all(0 <= x["overlap"] <= 1 for x in lines)


def test_route_changes_under_load_fail_no_request(server: dict[str, Any]) -> None:
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def drive(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            u = worker
            while not stop.is_set():
                body = {"instances": [{"user_id": u, "k": 5}]}
                try:
                    r = client.post(f"{server['url']}/v1/models/vidrec:predict", json=body)
                    version = r.json()["predictions"][0]["model_version"] if r.is_success else ""
                    results.append((r.status_code, version))
                except httpx.HTTPError as exc:
                    results.append((0, type(exc).__name__))
                u += 4

    workers = [threading.Thread(target=drive, args=(i,)) for i in range(4)]
    with routes(server):
        for w in workers:
            w.start()
        changes = [{"canary_percent": 5.0}, {"canary_percent": 25.0, "shadow_fraction": 0.5},
                   {"canary_percent": 100.0}, {"champion": "2", "challenger": "1",
                   "canary_percent": 0.0, "shadow_fraction": 0.0}, {"canary_percent": 50.0},
                   {"champion": "1", "challenger": "2", "canary_percent": 0.0}]  # fmt: skip
        for change in changes:
            time.sleep(1.0)
            set_routes(server, **change)
        time.sleep(1.0)
        stop.set()
        for w in workers:
            w.join()
    failed = [r for r in results if r[0] != 200]
    assert len(results) > 50 and not failed, failed[:5]
    assert {v for _, v in results} == {"1", "2"}


def test_feedback_joins_to_the_served_request_and_is_logged(server: dict[str, Any]) -> None:
    p = recommend(server, 21, k=4)
    first, second = p["items"][0]["video_id"], p["items"][1]["video_id"]
    outcomes = [
        {"request_id": p["request_id"], "video_id": first, "clicked": True, "watch_seconds": 42.5},
        {"request_id": p["request_id"], "video_id": second, "clicked": False},
        {"request_id": "never-served", "video_id": first, "clicked": True},
    ]
    clicks = 'vidrec_clicks_total{variant="champion",version="1"}'
    before = _metric(server, clicks)
    r = httpx.post(f"{server['url']}/v1/feedback", json={"outcomes": outcomes}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    assert r.json()["rejected"] == [{"index": 2, "request_id": "never-served",
                                     "video_id": first, "reason": "unknown_request"}]  # fmt: skip
    assert _metric(server, clicks) == before + 1
    assert _metric(server, 'vidrec_feedback_outcomes_total{result="unknown_request"}') >= 1
    assert _metric(server, 'vidrec_watch_seconds_total{variant="champion",version="1"}') >= 42.5
    imp = _logged(server, "impressions", p["request_id"])
    assert sorted(imp.column("video_id").to_pylist()) == sorted(i["video_id"] for i in p["items"])
    check_schema(imp.schema, IMPRESSIONS, "impressions")
    wat = _logged(server, "watches", p["request_id"])
    check_schema(wat.schema, WATCHES, "watches")
    assert wat.column("video_id").to_pylist() == [first]


def test_a_request_id_names_one_served_request(server: dict[str, Any]) -> None:
    """Outcomes join on the id and training groups a slate's impressions by it: a client's
    id is refused while another request holds it, in flight or answered."""
    ask = {"user_id": 31, "k": 3, "request_id": "client-7"}
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(lambda _: predict(server, ask).status_code, range(6)))
    assert codes == [200, 409, 409, 409, 409, 409], codes
    again = predict(server, ask)
    assert again.status_code == 409 and again.json()["details"] == {
        "key": "request_id", "source": "instances[0]"}, again.text  # fmt: skip
    said = again.json()["message"]
    assert "instances[0]: request_id: 'client-7' is taken by another request (in flight" in said
    # one body naming an id twice: 422 at the second; an id taken: nothing of the body is kept
    twice = predict(server, {**ask, "request_id": "c-8"}, {**ask, "request_id": "c-8"})
    assert twice.status_code == 422 and "instances[1]: request_id" in twice.text, twice.text
    taken = predict(server, {**ask, "request_id": "c-9"}, ask)
    assert taken.status_code == 409 and "instances[1]" in taken.text, taken.text
    assert predict(server, {**ask, "request_id": "c-9"}).status_code == 200
    assert _logged(server, "impressions", "client-7").num_rows == 3  # one slate, logged once


def test_traffic_replays_users_and_their_outcomes(server: dict[str, Any], small_sim: Path) -> None:
    clicks = 'vidrec_clicks_total{variant="champion",version="1"}'
    before = _metric(server, clicks)
    users = SimulatedUsers.load(small_sim)
    out = replay(server["url"], users, rate=10, duration_s=3, k=10, seed=5)
    assert out["planned"] == 30 and out["ok"] == 30 and out["status"] == {"200": 30}
    champion = out["variants"]["champion"]
    assert champion["requests"] == 30 and champion["impressions"] == 300
    assert out["feedback"]["accepted"] > 0 and set(out["feedback"]) == {"accepted"}
    assert _metric(server, clicks) == before + champion["clicks"]
    assert champion["true_engagement_per_request"] > 0
    shown = render(out)  # what `vidrec traffic` prints on a terminal
    assert "30 of 30 requests answered 2xx" in shown[0] and "0 other statuses" in shown[0]
    assert shown[-1].startswith("| champion | 30 | 0 | ")


def test_the_served_log_is_training_data_after_ingest(
    server: dict[str, Any], small_sim: Path, tmp_path: Path
) -> None:
    """The feedback loop's last hop: what the server logged, `vidrec ingest` appends to the
    data training reads. Rows the data cannot take (users it lacks: the unknown-user tests')
    are rejected there and counted: every ingested row is one or the other."""
    data = tmp_path / "data"
    shutil.copytree(small_sim, data, ignore=shutil.ignore_patterns("oracle"))
    before = _clean(data)
    p = recommend(server, 23, k=6)
    outcome = {"request_id": p["request_id"], "video_id": p["items"][2]["video_id"],
               "clicked": True, "watch_seconds": 12.0}  # fmt: skip
    assert httpx.post(f"{server['url']}/v1/feedback", json={"outcomes": [outcome]},
                      timeout=10).status_code == 200  # fmt: skip
    _logged(server, "watches", p["request_id"])  # flushed: in a part
    run = subprocess.run([sys.executable, "-m", "vidrec.cli", "ingest", "--log",
                          str(server["log_dir"]), "--data", str(data), "--json"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["refused"] == 0 and got["tables"]["watches"]["rows"] >= 1, got
    after = _clean(data)
    for t in ("impressions", "watches"):
        kept, rejected = after[t][0] - before[t][0], after[t][1] - before[t][1]
        assert kept + rejected == got["tables"][t]["rows"], (t, got, before, after)
    assert after["impressions"][0] >= before["impressions"][0] + 6  # this slate, at least
    assert after["watches"][0] >= before["watches"][0] + 1


def _clean(data: Path) -> dict[str, tuple[int, int]]:
    """Per event table: the rows training reads and the rows it rejects."""
    ds = open_dataset(data, FeatureConfig())
    try:
        return {t: (scalar(ds.con, f"SELECT count(*) FROM {t}"), sum(ds.rejected[t].values()))
                for t in ("impressions", "watches")}  # fmt: skip
    finally:
        ds.con.close()


def test_log_parts_past_the_retention_are_deleted(server: dict[str, Any]) -> None:
    """A part an earlier server wrote 8 days ago (`serving_server`): the retention (7 days)
    deletes it (which parts stay: tests/unit/test_feedback.py)."""
    assert not server["expired"].exists()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"outcomes": [', 400, "not JSON"),
        (b'{"outcomes": []}', 422, "outcomes"),
        (b'{"outcomes": [{"request_id": "a", "video_id": 1}]}', 422, "outcomes.0.clicked"),
        (
            b'{"outcomes": [{"request_id": "a", "video_id": 1, "clicked": false, '
            b'"watch_seconds": 5}]}',
            422,
            "needs clicked",
        ),
        (
            b'{"outcomes": [{"request_id": "a", "video_id": 1, "clicked": "yes"}]}',
            422,
            "outcomes.0.clicked: Input should be a valid boolean",
        ),
        (
            b'{"outcomes": [{"request_id": "a", "video_id": 1, "clicked": true, '
            b'"watch_seconds": NaN}]}',
            400,
            "not JSON",
        ),
        # nested past any stack: a 400, where the json module recursed into a 500
        (b'{"outcomes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "not JSON"),
    ],
)
def test_bad_feedback_gets_a_4xx_that_says_what(
    server: dict[str, Any], body: bytes, status: int, says: str
) -> None:
    r = httpx.post(f"{server['url']}/v1/feedback", content=body, timeout=10,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == status and says in r.text, r.text


def test_metrics_are_on_the_scraped_port(server: dict[str, Any]) -> None:
    predict(server, {"user_id": 11, "k": 5})
    assert predict(server, {"user_id": 11, "k": 0}).status_code == 422  # its own rejection
    text = httpx.get(f"{server['url']}/metrics", timeout=5).text
    assert 'vidrec_requests_total{code="200",variant="champion"}' in text
    for stage in ("retrieval", "features", "ranking", "total"):
        assert f'stage="{stage}"' in text
    assert 'vidrec_requests_total{code="422",variant="none"}' in text


def test_requests_are_not_logged_a_line_each_unless_asked(server: dict[str, Any]) -> None:
    for user in range(5):
        assert predict(server, {"user_id": user}).status_code == 200
    text = server["serve_log"].read_text()
    assert '"url":"http://127.0.0.1:' in text  # the log is the server's (its first line)
    assert "vidrec%3Apredict" not in text and "kserve.io.v1" not in text


def test_requests_that_arrive_together_share_model_calls(server: dict[str, Any]) -> None:
    """One body of 20 instances reaches the router at once: the first call per replica (two
    by default) leaves alone, the rest wait for them and go in calls of at most `max_batch`
    (16); each gets its own answer, from the model."""
    count, total = (f'vidrec_model_call_requests_{x}{{call="served",version="1"}}'
                    for x in ("count", "sum"))  # fmt: skip
    with routes(server):
        set_routes(server, canary_percent=0.0, shadow_fraction=0.0)
        calls, sent = _metric(server, count), _metric(server, total)
        r = predict(server, *({"user_id": u, "k": 5} for u in range(100, 120)))
        assert r.status_code == 200, r.text
        answers = r.json()["predictions"]
        assert [a["user_id"] for a in answers] == list(range(100, 120))
        assert not any(a["degraded"] for a in answers), [a["reason"] for a in answers]
        assert _metric(server, total) - sent == 20
        # a call in flight per replica: 1 and 1 at once, 16 when one answers, the last 2
        assert ServingConfig().replicas == 2
        assert _metric(server, count) - calls == 4


def test_the_collectors_pauses_are_on_metrics_by_generation(server: dict[str, Any]) -> None:
    """Every collection since start-up is timed, full ones (generation 2) included. That
    start-up's objects were frozen is not visible from here (test_gc_pauses checks it)."""
    assert _metric(server, 'vidrec_gc_pause_seconds_count{generation="2"}') >= 1
    predict(server, {"user_id": 11, "k": 5})
    assert _metric(server, 'vidrec_gc_pause_seconds_count{generation="0"}') >= 1


def recommend(s: dict[str, Any], user: int, k: int = 10) -> dict[str, Any]:
    r = predict(s, {"user_id": user, "k": k})
    assert r.status_code == 200, r.text
    prediction: dict[str, Any] = r.json()["predictions"][0]
    return prediction


@contextlib.contextmanager
def routes(s: dict[str, Any]) -> Iterator[RouteTable]:
    """The route table as found, restored afterwards."""
    src = FileRouteSource(s["routes"])
    table = src.get()
    try:
        yield table
    finally:
        src.set(table)
        time.sleep(0.2)


def set_routes(s: dict[str, Any], **change: Any) -> RouteTable:
    src = FileRouteSource(s["routes"])
    table = src.set(RouteTable(**{**src.get().model_dump(), **change}))
    return table


@contextlib.contextmanager
def faults(s: dict[str, Any], *fault: dict[str, Any]) -> Iterator[None]:
    write_atomic(s["faults"], json.dumps({"faults": list(fault)}))
    try:
        yield
    finally:
        s["faults"].unlink()


def _recovers(s: dict[str, Any], within_s: float = 90) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not recommend(s, 1)["degraded"]:
            return True
        time.sleep(1)
    return False


def _metric(s: dict[str, Any], series: str) -> float:
    """Sum of the samples of `name{labels}` whose labels include the given ones."""
    name, _, rest = series.partition("{")
    want = [x for x in rest.rstrip("}").split(",") if x]
    total = 0.0
    for line in httpx.get(f"{s['url']}/metrics", timeout=5).text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.partition("{")[0] == name and all(w in head for w in want):
            total += float(value)
    return total


def _logged(s: dict[str, Any], table: str, request_id: str, within_s: float = 30) -> Any:
    """The request's rows in the impression log (flushed every few seconds)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        parts = sorted((s["log_dir"] / table).glob("*.parquet"))
        if parts:
            t = pq.read_table(parts)
            rows = t.filter(pc.equal(t.column("request_key"), request_id))
            if rows.num_rows:
                return rows
        time.sleep(1)
    pytest.fail(f"request {request_id} never reached the {table} log")
