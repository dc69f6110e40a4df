"""Online store contract, shared by every implementation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from vidrec.errors import ConfigError, InvalidInput
from vidrec.features.store import OnlineStore, in_memory, open_store, sqlite_file


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        s = open_store("sqlite:///")
    else:
        s = open_store(request.getfixturevalue("redis_url"))
        s.r.flushdb()  # type: ignore[attr-defined]
    yield s
    s.close()


def test_snapshot_round_trips_exactly_and_replaces(store: OnlineStore) -> None:
    rows = [((1,), {"a": 0.1 + 0.2, "b": None, "c": "x"}), ((2,), {"a": 1e-300, "b": 3})]
    assert store.write_snapshot("user", 100, rows) == 2
    got = store.read("user", [(2,), (9,), (1,)])
    assert got[0] == {"a": 1e-300, "b": 3} and got[1] is None
    assert got[2] is not None and got[2]["a"] == 0.1 + 0.2 and got[2]["b"] is None
    assert store.snapshot_time("user") == 100
    store.write_snapshot("user", 200, [((3,), {"a": math.pi})])
    assert store.read("user", [(1,), (3,)]) == [None, {"a": math.pi}]
    assert store.snapshot_time("user") == 200


def test_composite_keys(store: OnlineStore) -> None:
    store.write_snapshot("user_category", 5, [((1, "music"), {"n": 2})])
    assert store.read("user_category", [(1, "music"), (1, "news")]) == [{"n": 2}, None]


def test_history_is_strictly_before_and_ordered_like_the_offline_join(store: OnlineStore) -> None:
    store.replace_history(
        [(1, 5, 3), (1, 5, 1), (1, 5, 1), (1, 7, 2), (1, 3, 9), (2, 1, 4), (1, 4, -6)]
    )
    assert store.history(1, 6, 3) == [1, 1, 3]
    assert store.history(1, 6, 10) == [9, -6, 1, 1, 3]
    assert store.history(1, 5, 10) == [9, -6]  # ts == 5 is not before 5
    assert store.history(1, 100, 2) == [3, 2]
    assert store.history(3, 100, 2) == []


def test_history_is_replaced_not_appended(store: OnlineStore) -> None:
    """A refresh loads every event again: the history is what it loaded, nothing twice,
    and a user it no longer names has none."""
    store.replace_history([(1, 5, 3), (2, 1, 4), (1, 6, 8)])
    assert store.replace_history([(1, 5, 3), (1, 6, 8), (1, 9, 3), (3, 2, 7)]) == 4
    assert store.history(1, 100, 10) == [3, 8, 3]
    assert (store.history(2, 100, 10), store.history(3, 100, 10)) == ([], [7])
    assert store.replace_history([]) == 0 and store.history(1, 100, 10) == []


def test_unknown_store_url() -> None:
    with pytest.raises(ConfigError, match="online_store"):
        open_store("postgres://x")


def test_which_urls_name_a_store_that_outlives_the_process() -> None:
    """serve and materialize refuse what `in_memory` says; serve wants the file to exist."""
    assert in_memory("sqlite:///") and in_memory("sqlite:///:memory:")
    assert not in_memory("sqlite:////data/online.db") and not in_memory("redis://h:6379/0")
    assert sqlite_file("sqlite:////data/online.db") == Path("/data/online.db")
    assert sqlite_file("sqlite:///rel/online.db") == Path("rel/online.db")
    assert sqlite_file("sqlite:///") is None and sqlite_file("redis://h:6379/0") is None


def test_snapshot_versions_change_with_every_write(store: OnlineStore) -> None:
    assert store.snapshot_versions() == {}
    store.write_snapshot("video", 100, [((1,), {"a": 1})])
    first = store.snapshot_versions()
    assert set(first) == {"video"}
    store.write_snapshot("video", 100, [((1,), {"a": 2})])  # same as_of, new rows
    store.write_snapshot("creator", 100, [((7,), {"b": 1})])
    second = store.snapshot_versions()
    assert set(second) == {"video", "creator"} and second["video"] != first["video"]


def test_a_sqlite_file_that_cannot_be_a_store_is_bad_input_naming_it(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a database, and not a directory either")
    for path in (tmp_path / "afile" / "x.db", tmp_path / "afile"):
        with pytest.raises(InvalidInput) as e:
            open_store(f"sqlite:///{path}")
        assert e.value.http_status == 400 and e.value.details["file"] == str(path)
        assert str(path) in e.value.message
