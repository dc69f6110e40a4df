"""The split topology (Retrieval and Ranking as deployments of their own, composed by the
version's replica) answers the same protocol, with every stage timed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serving_server import start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def split(served_models: dict[str, Any]) -> Iterator[dict[str, Any]]:
    with start_server(served_models, "split") as s:
        yield s


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
