"""Sticky canary routing: monotone in the weight, stable per user, shadow on a fraction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vidrec.serving.routing import (
    BUCKETS,
    COHORTS,
    RouteTable,
    assign,
    bucket,
    cohort,
    route_bucket,
    shadowed,
)

USERS = range(20_000)


def table(percent: float, shadow: float = 0.0) -> RouteTable:
    return RouteTable(champion="1", challenger="2", canary_percent=percent, shadow_fraction=shadow)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 100, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
    st.integers(0, 10**12),
)
def test_raising_the_weight_only_adds_users(lo: float, hi: float, user: int) -> None:
    lo, hi = sorted((lo, hi))
    if assign(table(lo), user) == "challenger":
        assert assign(table(hi), user) == "challenger"


def test_the_share_of_users_matches_the_weight() -> None:
    for percent in (1, 5, 25, 50):
        share = sum(assign(table(percent), u) == "challenger" for u in USERS) / len(USERS)
        assert abs(share - percent / 100) < 0.01, (percent, share)
    assert all(assign(table(100), u) == "challenger" for u in range(1000))
    assert all(assign(table(0), u) == "champion" for u in range(1000))


def test_a_user_always_gets_the_same_bucket_and_variant() -> None:
    assert [bucket(u) for u in range(100)] == [bucket(u) for u in range(100)]
    assert all(0 <= bucket(u) < BUCKETS for u in range(1000))
    assert bucket(7) == bucket("7")  # ids arrive as ints or strings
    t = table(30)
    assert [assign(t, u) for u in range(500)] == [assign(table(30), u) for u in range(500)]
    # a new salt is a new cohort
    other = t.model_copy(update={"salt": "cohort-2"})
    assert [assign(t, u) for u in range(500)] != [assign(other, u) for u in range(500)]


def test_a_whole_percent_canary_is_a_set_of_whole_cohorts() -> None:
    def challenger_cohorts(t: RouteTable) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for u in USERS:
            seen.setdefault(cohort(u), set()).add(assign(t, u))
        return seen

    for percent in (5, 10, 25):
        seen = challenger_cohorts(table(percent))
        assert len(seen) == COHORTS and all(len(v) == 1 for v in seen.values()), percent
        assert sum(v == {"challenger"} for v in seen.values()) == percent
    # a fractional weight splits one cohort; another salt picks other cohorts
    assert sum(len(v) == 2 for v in challenger_cohorts(table(5.5)).values()) == 1
    mine = {c for c, v in challenger_cohorts(table(10)).items() if v == {"challenger"}}
    other = table(10).model_copy(update={"salt": "v3"})
    theirs = {c for c, v in challenger_cohorts(other).items() if v == {"challenger"}}
    assert len(theirs) == 10 and mine != theirs
    assert all(0 <= route_bucket(u, "v3") < BUCKETS for u in range(1000))


def test_shadow_is_a_request_fraction_and_never_doubles_the_challenger() -> None:
    t = table(10, shadow=0.2)
    share = sum(shadowed(t, f"r{i}", "champion") for i in range(20_000)) / 20_000
    assert abs(share - 0.2) < 0.01
    assert not any(shadowed(t, f"r{i}", "challenger") for i in range(2000))
    assert not any(shadowed(table(10), f"r{i}", "champion") for i in range(2000))


def test_a_route_table_without_a_challenger_cannot_canary_or_shadow() -> None:
    with pytest.raises(ValidationError, match="need a challenger"):
        RouteTable(champion="1", canary_percent=5)
    with pytest.raises(ValidationError, match="must differ"):
        RouteTable(champion="1", challenger="1")
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        RouteTable(champion="1", challenger="2", canary_percent=101)
    with pytest.raises(ValidationError, match="extra"):
        RouteTable(champion="1", weight=3)  # type: ignore[call-arg]
    assert assign(RouteTable(champion="1"), 5) == "champion"


def test_file_route_source_versions_every_change_and_refuses_stale_writes(tmp_path) -> None:
    from vidrec.errors import Conflict, NotReady
    from vidrec.serving.file_routes import FileRouteSource

    src = FileRouteSource(tmp_path / "routes.json")
    with pytest.raises(NotReady):
        src.get()
    first = src.set(RouteTable(champion="1"))
    assert first.version == 1 and src.get() == first
    second = src.set(table(5), expected_version=1)
    assert second.version == 2 and src.get().canary_percent == 5
    with pytest.raises(Conflict, match="version 2, not 1"):
        src.set(table(50), expected_version=1)
    assert src.get().canary_percent == 5  # the stale write changed nothing
    other = FileRouteSource(tmp_path / "routes.json")  # another process sees the same table
    assert other.get() == second
    assert other.error is None


def test_a_route_table_broken_by_hand_leaves_the_last_valid_one_in_force(tmp_path) -> None:
    """A typo in a hand-edited table answered every request with a 422 (the client's fault,
    it said) until someone noticed."""
    from vidrec.errors import NotReady
    from vidrec.serving.file_routes import FileRouteSource

    path = tmp_path / "routes.json"
    src = FileRouteSource(path)
    good = src.set(table(5))
    assert src.get() == good  # a server reads it with every request
    path.write_text('{"champion": "1", "canary_percent": "x"}')
    assert src.get() == good  # in force still, and why the file is not
    assert src.error is not None and "canary_percent" in src.error.message
    assert str(path) in src.error.message
    with pytest.raises(NotReady, match="canary_percent") as never:  # a server starting now
        FileRouteSource(path).get()
    assert never.value.http_status == 503 and never.value.details["file"] == str(path)
    path.write_text(table(25).model_dump_json())  # fixed by hand
    assert src.get().canary_percent == 25 and src.error is None
