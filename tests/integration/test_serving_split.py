"""The split topology (Retrieval and Ranking as deployments of their own, composed by the
version's replica) answers the same protocol, with every stage timed. This server keeps what
it served in Redis, as the chart's pods do (`VIDREC_SERVED_STORE`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from serving_server import start_server
from vidrec.serving.served_redis import PREFIX

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def split(served_models: dict[str, Any], redis_url: str) -> Iterator[dict[str, Any]]:
    shared = redis_url.rsplit("/", 1)[0] + "/3"  # a db of its own
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VIDREC_SERVED_STORE", shared)  # read when the server starts
        with start_server(served_models, "split") as s:
            yield {**s, "shared": shared}


def test_the_split_topology_ranks_through_its_stage_deployments(split: dict[str, Any]) -> None:
    body = {"instances": [{"user_id": u, "k": 6, "context": {"ts": split["ts"]}} for u in (3, 4)]}
    r = httpx.post(f"{split['url']}/v1/models/vidrec:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    for p in r.json()["predictions"]:
        assert not p["degraded"], p["reason"]
        assert p["model_version"] == "1" and len(p["items"]) == 6
        assert set(p["timings_s"]) == {"retrieval", "features", "ranking"}
    metrics = httpx.get(f"{split['url']}/metrics", timeout=5).text
    assert 'vidrec_request_duration_seconds_count{stage="ranking",variant="champion"}' in metrics


def test_what_it_served_waits_for_feedback_in_the_shared_store(split: dict[str, Any]) -> None:
    body = {"instances": [{"user_id": 5, "k": 3, "request_id": "split-1"}]}
    r = httpx.post(f"{split['url']}/v1/models/vidrec:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    shown = [i["video_id"] for i in r.json()["predictions"][0]["items"]]
    stored = redis.Redis.from_url(split["shared"]).get(PREFIX + "split-1")
    assert stored is not None and orjson.loads(stored)[4] == shown  # what another pod would read
    outcome = {"request_id": "split-1", "video_id": shown[0], "clicked": True}
    r = httpx.post(f"{split['url']}/v1/feedback", json={"outcomes": [outcome] * 2}, timeout=10)
    assert r.json()["accepted"] == 1 and r.json()["rejected"][0]["reason"] == "duplicate", r.text
    again = httpx.post(f"{split['url']}/v1/models/vidrec:predict", json=body, timeout=30)
    assert again.status_code == 409, again.text  # the id is taken, as the store says
