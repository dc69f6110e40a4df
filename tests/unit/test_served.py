"""Where served requests wait for their feedback: the contract of every store, and a Redis
store shared by two servers (pods), so an outcome joins wherever it is posted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from vidrec.config import ServingConfig
from vidrec.errors import ConfigError, NotReady
from vidrec.serving.api import Item, RecommendRequest, RecommendResponse
from vidrec.serving.feedback import ImpressionLog, Outcome
from vidrec.serving.served import ServedRequest, ServedRequests, open_served
from vidrec.serving.served_redis import CLAIM, PREFIX


def _db2(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/2"  # the online store's tests flush db 0


@pytest.fixture
def shared_url(redis_url: str) -> str:
    url = _db2(redis_url)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[ServedRequests]:
    url = "" if request.param == "memory" else request.getfixturevalue("shared_url")
    yield open_served(url, remember=100, ttl_s=60)


def served(rid: str, videos: list[int], variant: str = "champion") -> RecommendResponse:
    items = [Item(video_id=v, score=1.0, source="ranked", propensity=1.0) for v in videos]
    return RecommendResponse(request_id=rid, ts=1000, user_id=7, variant=variant,
                             model_version="3", items=items)  # fmt: skip


def test_a_remembered_request_is_found_as_served(store: ServedRequests) -> None:
    store.remember([ServedRequest("a", 1000, 7, "challenger", "3", (10, 11))])
    a, missing = store.find(["a", "nope"])
    assert missing is None and a is not None
    assert (a.request_id, a.ts, a.user_id, a.variant, a.version, a.videos) == (
        "a", 1000, 7, "challenger", "3", (10, 11))  # fmt: skip
    assert store.find([]) == []


def test_an_outcome_is_first_once_per_request_and_video(store: ServedRequests) -> None:
    store.remember([ServedRequest("a", 1000, 7, "champion", "3", (10, 11))])
    store.remember([ServedRequest("b", 1000, 8, "champion", "3", (10,))])
    assert store.first([("a", 10), ("a", 11), ("a", 10), ("b", 10)]) == [True, True, False, True]
    assert store.first([("a", 11), ("b", 10)]) == [False, False]
    assert store.first([]) == []


def test_a_claimed_id_is_taken_until_released_or_while_remembered(store: ServedRequests) -> None:
    assert store.claim(["a", "b"]) == set() and store.claim([]) == set()
    assert store.claim(["c", "a"]) == {"a"}  # in flight
    assert store.claim(["c"]) == set()  # refused above, so "c" was not held
    store.release(["b"])  # failed: free to retry
    assert store.claim(["b"]) == set()
    store.remember([ServedRequest("a", 1000, 7, "champion", "3", (10,))])
    store.release(["a"])  # remembered: still taken whatever happens after
    assert store.claim(["a"]) == {"a"}
    store.remember([ServedRequest("z", 1000, 7, "champion", "3", (10,))])  # never claimed
    assert store.claim(["z", "y"]) == {"z"}


@pytest.mark.integration
def test_two_pods_never_both_claim_one_id(shared_url: str) -> None:
    pods = [open_served(shared_url, 100, 60, hold_s=5) for _ in range(2)]
    assert pods[0].claim(["r1"]) == set()
    assert pods[1].claim(["r1", "r2"]) == {"r1"}  # in flight on the other pod
    assert pods[0].claim(["r2"]) == set()  # pods[1] held none of its refused call's ids
    r = redis.Redis.from_url(shared_url)
    assert 0 < r.ttl(CLAIM + "r1") <= 5  # a pod that dies mid-request frees it then
    pods[0].remember([ServedRequest("r1", 1000, 7, "champion", "3", (10,))])
    r.delete(CLAIM + "r1")  # as if the hold had run out: remembered, it stays taken
    assert pods[1].claim(["r1"]) == {"r1"}
    pods[0].release(["r2"])
    assert pods[1].claim(["r2"]) == set()


@pytest.mark.integration
def test_feedback_joins_on_whichever_server_it_reaches(shared_url: str) -> None:
    """Two pods behind one Service: the one that served and the one the outcome reaches."""
    pods = [ImpressionLog(None, requests=open_served(shared_url, 100, 60)) for _ in range(2)]
    pods[0].served(RecommendRequest(user_id=7), served("r1", [10, 11], "challenger"))
    joined, rejected = pods[1].feedback([
        Outcome(request_id="r1", video_id=11, clicked=True, watch_seconds=8.0),
        Outcome(request_id="r1", video_id=12, clicked=True),
        Outcome(request_id="r2", video_id=10, clicked=True),
    ])  # fmt: skip
    assert [(j.variant, j.version, j.user_id, j.outcome.video_id) for j in joined] == [
        ("challenger", "3", 7, 11)]  # fmt: skip
    assert [(r.index, r.reason) for r in rejected] == [(1, "not_shown"), (2, "unknown_request")]
    # the same outcome posted again to the other pod: a duplicate there too
    _, again = pods[0].feedback([Outcome(request_id="r1", video_id=11, clicked=True)])
    assert [r.reason for r in again] == ["duplicate"]
    assert pods[1].requests.claim(["r1", "r2"]) == {"r1"}
    r = redis.Redis.from_url(shared_url)
    assert 0 < r.ttl(PREFIX + "r1") <= 60 and 0 < r.ttl(PREFIX + "r1:answered") <= 60


@pytest.mark.integration
def test_an_unreachable_store_is_a_503_naming_it(redis_url: str) -> None:
    gone = redis_url.rsplit(":", 1)[0] + ":1/0"  # nothing listens on port 1
    store = open_served(gone, 100, 60)
    with pytest.raises(NotReady, match=r"served-request store redis://127\.0\.0\.1:1/0"):
        store.remember([ServedRequest("a", 1000, 7, "champion", "3", (10,))])
    with pytest.raises(NotReady):
        store.find(["a"])
    with pytest.raises(NotReady):
        store.claim(["a"])
    store.release(["a"])  # a failed request's claim: logged, it expires on its own


def test_a_served_store_that_is_not_redis_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="served_store"):
        ServingConfig(served_store="mysql://db/0")
    with pytest.raises(ConfigError, match=r"serving\.served_store"):
        open_served("mysql://db/0", 100, 60)
