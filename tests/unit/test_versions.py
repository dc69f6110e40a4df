"""Which versions `vidrec serve` keeps loaded as the route table changes (the decision;
tests/integration/test_serving_versions.py carries it out on the real server)."""

from __future__ import annotations

import pytest

from vidrec.config import ServingConfig
from vidrec.serving.deployments import room
from vidrec.serving.versions import Plan, idle_since, plan

KEEP, DRAIN = 300.0, 5.0


def decide(named: list[str], idle: dict[str, float | None], now: float, space: int = 5) -> Plan:
    return plan(named, idle, now, KEEP, DRAIN, space)


def test_a_version_is_idle_from_when_the_table_stops_naming_it() -> None:
    idle = idle_since({"1": None, "2": None}, ["1"], now=10.0)
    assert idle == {"1": None, "2": 10.0}
    assert idle_since(idle, ["1"], now=50.0) == {"1": None, "2": 10.0}  # not restarted
    assert idle_since(idle, ["2"], now=60.0) == {"1": 60.0, "2": None}  # named again: warm


def test_named_versions_load_and_unnamed_ones_retire_only_after_the_grace() -> None:
    assert decide(["1", "3"], {"1": None, "2": None}, 0.0) == Plan(load=("3",))
    assert decide(["1"], {"1": None, "2": 10.0}, 10.0 + KEEP - 1) == Plan()
    assert decide(["1"], {"1": None, "2": 10.0}, 10.0 + KEEP) == Plan(retire=("2",))
    assert decide(["1", "1"], {"1": None}, 0.0) == Plan()  # champion == challenger: one app


def test_a_named_version_takes_the_room_of_the_longest_idle_drained_ones() -> None:
    loaded = {"1": None, "2": 100.0, "3": 90.0, "4": 103.0}  # 4: idle 2 s, still draining
    assert decide(["1", "5"], loaded, 105.0, space=4) == Plan(retire=("3",), load=("5",))
    both = {"1": 104.0, "2": 100.0, "4": 103.0}  # the champion changed: 1 is draining too
    assert decide(["5", "6"], both, 105.0, space=3) == Plan(
        retire=("2",), load=("5",), no_room=("6",)
    )
    # nothing drained yet: it waits, and nothing is retired for it
    assert decide(["1", "5"], {"1": None, "4": 103.0}, 105.0, space=2) == Plan(no_room=("5",))


def test_a_zero_grace_still_waits_for_calls_in_flight_to_drain() -> None:
    assert plan(["1"], {"1": None, "2": 10.0}, 12.0, 0.0, DRAIN, 5) == Plan()
    assert plan(["1"], {"1": None, "2": 10.0}, 15.0, 0.0, DRAIN, 5) == Plan(retire=("2",))


@pytest.mark.parametrize(
    ("topology", "replicas", "versions"),
    [("fused", None, 5), ("fused", 1, 10), ("fused", 3, 3), ("split", None, 3), ("split", 2, 2)],
)
def test_room_is_the_versions_whose_replicas_all_fit_in_the_ray_node(
    topology: str, replicas: int | None, versions: int
) -> None:
    assert room(ServingConfig(topology=topology, replicas_per_version=replicas)) == versions
