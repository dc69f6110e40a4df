"""The online feature service on a small hand-written store: keys, cache, columns vs frame."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import pytest

from vidrec.features.definitions import FEATURES
from vidrec.features.online import OnlineFeatures, _RowCache
from vidrec.features.store import Key, OnlineStore, Row, open_store
from vidrec.features.transform import as_frame
from vidrec.models.two_tower import USER_COLUMNS

VIDEOS = [((1,), {"video_creator_id": 7, "video_category": "music", "video_impressions_7d": 40})]
CREATORS = [((7,), {"creator_watches_28d": 5, "creator_impressions_28d": 9})]


@pytest.fixture
def store() -> Iterator[OnlineStore]:
    s = open_store("sqlite:///")
    s.write_snapshot("video", 10, VIDEOS)
    s.write_snapshot("creator", 10, CREATORS)
    s.write_snapshot("user", 10, [((3,), {"user_country": "DE", "user_watches_7d": 4})])
    s.replace_history([(3, 5, 1), (3, 6, 9)])
    yield s
    s.close()


def requests(ids: list[int], ts: int = 20) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "request_id": ["r"] * n,
            "ts": [ts] * n,
            "user_id": [3] * n,
            "video_id": ids,
            "device": ["ios"] * n,
            "session_position": [0] * n,
        }
    )


def test_a_video_missing_from_the_snapshot_leaves_the_others_features_alone(
    store: OnlineStore,
) -> None:
    # a video uploaded after the snapshot has no creator; the others' creator keys must
    # still be ints (a float key, "[7.0]", would miss every creator row)
    f = OnlineFeatures(store, FEATURES, 5).frame(requests([1, 2]))
    assert f.creator_watches_28d.tolist() == [5, 0]
    assert f.video_impressions_7d.tolist() == [40, 0]
    assert f.user_watches_7d.tolist() == [4, 4] and f.user_country.tolist() == ["DE", "DE"]
    assert [list(v) for v in f.user_last_watched] == [[1, 9], [1, 9]]
    assert f.in_last_watched.tolist() == [1, 0]


def test_columns_are_the_frame(store: OnlineStore) -> None:
    online = OnlineFeatures(store, FEATURES, 5)
    req = requests([1, 2, 1])
    cols = online.columns({c: req[c].to_numpy() for c in req.columns})
    pd.testing.assert_frame_equal(as_frame(cols), online.frame(req))


class CountingStore:
    """The store, counting snapshot reads per entity."""

    def __init__(self, inner: OnlineStore) -> None:
        self.inner = inner
        self.reads = {"video": 0, "creator": 0, "user": 0, "user_category": 0}

    def read(self, entity: str, keys: Sequence[Key]) -> list[Row | None]:
        self.reads[entity] += len(keys)
        return self.inner.read(entity, keys)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_the_user_alone_gets_the_full_sets_values_without_reading_other_entities(
    store: OnlineStore,
) -> None:
    """Retrieval's service (`only({"user"})`): the same values for every feature it keeps,
    every input of the user tower among them, and no other entity's rows read."""
    counting = CountingStore(store)
    user = OnlineFeatures(counting, FEATURES, 5).only({"user"})  # type: ignore[arg-type]
    req = requests([-1])
    got = user.frame(req)
    full = OnlineFeatures(store, FEATURES, 5).frame(req)
    assert set(USER_COLUMNS) <= set(got.columns) < set(full.columns)
    assert "video_impressions_7d" not in got and "creator_ctr_28d" not in got
    pd.testing.assert_frame_equal(got, full[got.columns])
    assert got.user_watches_7d.tolist() == [4] and got.country_code.tolist()[0] >= 0
    assert counting.reads == {"video": 0, "creator": 0, "user": 1, "user_category": 0}


def test_shared_rows_are_cached_until_their_snapshot_is_rewritten(store: OnlineStore) -> None:
    counting = CountingStore(store)
    online = OnlineFeatures(counting, FEATURES, 5)  # type: ignore[arg-type]
    for _ in range(3):
        online.frame(requests([1, 2]))
    # videos and creators once (the missing video too); the user's own rows every time
    assert counting.reads == {"video": 2, "creator": 1, "user": 3, "user_category": 3}
    # a rewrite at the same as_of is served at once, not after a restart
    store.write_snapshot("creator", 10, [((7,), {"creator_watches_28d": 6})])
    f = online.frame(requests([1, 2]))
    assert f.creator_watches_28d.tolist() == [6, 0]
    assert counting.reads["video"] == 2 and counting.reads["creator"] == 2


def test_rows_without_a_version_are_never_cached(store: OnlineStore) -> None:
    counting = CountingStore(store)
    counting.snapshot_versions = dict  # type: ignore[method-assign]  # an older store file
    online = OnlineFeatures(counting, FEATURES, 5)  # type: ignore[arg-type]
    for _ in range(2):
        f = online.frame(requests([1]))
    assert counting.reads["video"] == 2 and f.creator_watches_28d.tolist() == [5]


def test_the_row_cache_grows_past_its_first_capacity_keeping_every_row(
    store: OnlineStore,
) -> None:
    videos = [((v,), {"video_creator_id": 7, "video_impressions_7d": 1000 + v}) for v in range(600)]
    store.write_snapshot("video", 11, videos)
    online = OnlineFeatures(store, FEATURES, 5)
    for ids in ([*range(0, 300), 10_000], [*range(300, 600), 10_001], [*range(600)]):
        f = online.frame(requests(ids))
        expected = [1000 + v if v < 600 else 0 for v in ids]  # unknown ids: the default
        assert f.video_impressions_7d.tolist() == expected


def test_the_row_cache_serves_concurrent_requests_their_rows() -> None:
    # a ranking replica's requests run in worker threads: the second asks for keys the
    # first is still reading, and must get their rows, not "absent"
    cache = _RowCache("v1", ["value"])
    inside, release = threading.Event(), threading.Event()

    def slow_read(keys: list[Any]) -> list[Any]:
        inside.set()
        release.wait(5)
        return [{"value": k[0] * 10} for k in keys]

    keys = [(k,) for k in range(1, 300)]
    got: dict[str, Any] = {}
    first = threading.Thread(target=lambda: got.update(a=cache.positions(keys, slow_read)))
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=lambda: got.update(b=cache.positions(keys[::-1], slow_read)))
    second.start()
    time.sleep(0.2)  # the second is now waiting (locked) or has answered (unlocked)
    release.set()
    first.join(5)
    second.join(5)
    for name, order in (("a", keys), ("b", keys[::-1])):
        values = cache.columns["value"][got[name]].tolist()
        assert values == [k[0] * 10 for k in order], name


def test_given_user_columns_are_not_read_again_but_request_columns_never_stand_in(
    store: OnlineStore,
) -> None:
    import numpy as np

    online = OnlineFeatures(store, FEATURES, 5)
    req = {c: s.to_numpy() for c, s in requests([1, 2]).items()}
    raw = online.read(req)
    user = {n: raw[n] for n in online.names_of("user")}
    assert {"user_country", "user_last_watched"} <= user.keys()
    reads: list[str] = []
    read, history = store.read, store.history
    store.read = lambda entity, keys: reads.append(entity) or read(entity, keys)  # type: ignore[method-assign]
    store.history = lambda *a: reads.append("history") or history(*a)  # type: ignore[method-assign]
    given = online.columns(req, user)
    assert "user" not in reads and "history" not in reads and "user_category" in reads
    pd.testing.assert_frame_equal(as_frame(given), online.frame(requests([1, 2])), check_like=True)
    # feature columns that arrive with the requests (every user column here) are read from
    # the store all the same: only `given` stands in for a read
    stale = {**req, **user, "user_watches_7d": np.array([99.0, 99.0])}
    assert online.columns(stale)["user_watches_7d"].tolist() == [4.0, 4.0]
