"""The controller over a real rollout file and a real route-table file, with scripted
measurements and a fake clock: stepping, rollback, requests, restart without double-steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout_fakes import SLOW, Clock, Registry, Script
from vidrec.config import AnalysisPolicy, RolloutPolicy, ShadowPolicy
from vidrec.errors import Conflict
from vidrec.rollout.app_router import AppRouter
from vidrec.rollout.controller import Controller
from vidrec.rollout.file_store import FileRolloutStore
from vidrec.rollout.local import request, start_rollout
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.routing import RouteTable

POLICY = RolloutPolicy(
    interval_s=10, step_s=20, steps=(10, 50), failure_limit=2, inconclusive_limit=3,
    shadow=ShadowPolicy(duration_s=10, fraction=0.5, min_requests=10),
    analysis=AnalysisPolicy(min_requests=10, min_impressions=100),
)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    routes = FileRouteSource(tmp_path / "routes.json")
    routes.set(RouteTable(champion="1"))
    store, router, reg, clock = FileRolloutStore(tmp_path / "rollout.json"), AppRouter(routes), \
        Registry(), Clock()  # fmt: skip
    script = Script()
    ctl = Controller(store, router, script, reg, clock=clock)  # type: ignore[arg-type]
    start_rollout(store, router, reg, "2", POLICY, now=clock.t)  # type: ignore[arg-type]
    return {"ctl": ctl, "routes": routes, "store": store, "reg": reg, "clock": clock,
            "script": script, "router": router}  # fmt: skip


def run(w: dict[str, Any], seconds: float, step: float = 1.0) -> list[str]:
    actions = []
    end = w["clock"].t + seconds
    while w["clock"].t < end:
        w["clock"].t += step
        a = w["ctl"].tick()
        if a:
            actions.append(a)
    return actions


def table(w: dict[str, Any]) -> tuple[str, str | None, float, float]:
    t = w["routes"].get()
    return t.champion, t.challenger, t.canary_percent, t.shadow_fraction


def test_a_good_challenger_goes_shadow_canary_promoted(world: dict[str, Any]) -> None:
    w = world
    assert w["reg"].aliases["challenger"] == 2
    run(w, 1)
    assert table(w) == ("1", "2", 0.0, 0.5)  # shadow applied at the first tick
    assert run(w, 10) == ["advance"]  # shadow held 10 s, analysed every 10 s
    assert table(w) == ("1", "2", 10.0, 0.0)
    assert w["routes"].get().salt == "v2"  # a fresh cohort for this challenger
    assert run(w, 20) == ["hold", "advance"]  # step held 20 s
    assert table(w)[2] == 50.0
    assert run(w, 20) == ["hold", "promote"]
    assert table(w) == ("2", None, 0.0, 0.0)
    ro = w["store"].get()
    assert ro.status.phase == "promoted" and ro.status.finalized
    assert w["reg"].aliases == {"champion": 2}
    assert w["reg"].tags[(2, "rollout")] == "promoted"
    # passing holds are not history (one per interval would bury the steps)
    assert [e.action for e in ro.status.history] == ["start", "advance", "advance", "promote"]
    assert run(w, 30) == []  # ended: nothing more
    w["routes"].set(RouteTable(champion="1"))  # a human routes by hand after the rollout
    assert run(w, 5) == [] and table(w) == ("1", None, 0.0, 0.0)  # hands-off


def test_a_slow_challenger_rolls_back_after_the_failure_limit(world: dict[str, Any]) -> None:
    w = world
    run(w, 11)
    w["script"].challenger = SLOW
    assert run(w, 20) == ["hold", "rollback"]
    assert table(w) == ("1", None, 0.0, 0.0)
    ro = w["store"].get()
    assert ro.status.phase == "rolled_back" and "latency_p99" in ro.status.reason
    assert w["reg"].aliases == {"champion": 1}
    assert w["reg"].tags[(2, "rollout")] == "rolled_back"
    assert "latency_p99" in w["reg"].tags[(2, "rollout_reason")]


def test_restart_resumes_without_double_stepping(world: dict[str, Any]) -> None:
    w = world
    run(w, 11)
    assert table(w)[2] == 10.0
    calls = w["script"].calls
    # a new controller (a restarted process) over the same files, at the same moment
    fresh = Controller(w["store"], w["router"], w["script"], w["reg"], clock=w["clock"])
    assert fresh.tick() is None and w["script"].calls == calls  # no analysis, no step
    # crash between storing a decision and applying it: the next tick applies it
    w["routes"].set(RouteTable(champion="1", challenger="2", canary_percent=10, salt="v2"))
    ro = w["store"].get()
    moved = ro.status.model_copy(update={"weight": 50.0, "step": 1})
    w["store"].put(ro.model_copy(update={"status": moved}), ro.generation)
    fresh.tick()
    assert table(w)[2] == 50.0


def test_a_request_is_handled_at_the_next_tick(world: dict[str, Any]) -> None:
    w = world
    run(w, 11)
    req, _ = request(w["store"], "pause")
    assert w["ctl"].tick() == "pause"
    assert w["store"].get().status.handled_request == req.id
    assert run(w, 60) == []  # paused: no analysis
    request(w["store"], "force_promote")
    assert run(w, 1) == ["promote"]
    assert table(w) == ("2", None, 0.0, 0.0)


def test_a_request_replacing_an_unhandled_one_says_which(world: dict[str, Any]) -> None:
    """The spec holds one request: the latest counts, and the replaced one is named."""
    w = world
    run(w, 11)
    pause, replaced = request(w["store"], "pause")
    assert replaced is None
    abort, replaced = request(w["store"], "abort")  # before any tick: pause never runs
    assert replaced == pause and abort.id == pause.id + 1
    assert w["ctl"].tick() == "abort"
    assert request(w["store"], "resume")[1] is None  # abort was handled: nothing replaced


def test_writes_are_generation_checked_and_starts_exclusive(world: dict[str, Any]) -> None:
    w = world
    ro = w["store"].get()
    w["store"].put(ro, ro.generation)
    with pytest.raises(Conflict, match="generation"):
        w["store"].put(ro, ro.generation)
    with pytest.raises(Conflict, match="still shadow"):
        start_rollout(w["store"], w["router"], w["reg"], "3", POLICY, now=0)


def test_a_new_rollout_archives_the_finished_one(world: dict[str, Any]) -> None:
    w = world
    request(w["store"], "abort")
    assert run(w, 1) == ["abort"]
    assert w["reg"].tags[(2, "rollout")] == "aborted"
    start_rollout(w["store"], w["router"], w["reg"], "3", POLICY, now=w["clock"].t)
    archived = w["store"].archived()
    assert [(r.spec.version, r.status.phase) for r in archived] == [("2", "aborted")]
    assert w["store"].get().spec.version == "3"
