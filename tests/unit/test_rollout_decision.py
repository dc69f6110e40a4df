"""Every transition of the rollout decision, table-driven: (status, checks or request) ->
(action, phase, weight, counters)."""

from __future__ import annotations

from typing import Any

import pytest

from vidrec.config import RolloutPolicy, ShadowPolicy, parse
from vidrec.errors import ConfigError
from vidrec.rollout.analysis import Check
from vidrec.rollout.decision import decide, on_request, start
from vidrec.rollout.state import Request, Status

POLICY = RolloutPolicy(
    interval_s=10, step_s=30, steps=(5, 25, 50), failure_limit=2, inconclusive_limit=3,
    shadow=ShadowPolicy(duration_s=20, fraction=0.5),
)  # fmt: skip
T = 1_000.0
OK = [Check(name="latency_p99", result="pass"), Check(name="ctr", result="pass")]
FAIL = [Check(name="latency_p99", result="fail"), Check(name="ctr", result="pass")]
UNSURE = [Check(name="latency_p99", result="pass"), Check(name="ctr", result="inconclusive")]
PENDING = [Check(name="latency_p99", result="pass"), Check(name="ctr", result="pending")]
BOTH = [Check(name="latency_p99", result="fail"), Check(name="ctr", result="inconclusive")]


def shadow(**kw: Any) -> Status:
    return Status(phase="shadow", shadow_fraction=0.5, started_at=T, step_started_at=T, **kw)


def canary(step: int, **kw: Any) -> Status:
    base = {"phase": "canary", "step": step, "weight": POLICY.steps[step], "started_at": T,
            "step_started_at": T, "canary_started_at": T}  # fmt: skip
    return Status(**{**base, **kw})


CASES = [
    # (name, status, checks, seconds after T, action, phase, weight, failures, inconclusive)
    ("shadow held too short", shadow(), OK, 10, "hold", "shadow", 0, 0, 0),
    ("shadow passed and held", shadow(), OK, 20, "advance", "canary", 5, 0, 0),
    ("canary step held too short", canary(0), OK, 29, "hold", "canary", 5, 0, 0),
    ("canary step passed", canary(0), OK, 30, "advance", "canary", 25, 0, 0),
    ("last step passed: promote", canary(2), OK, 30, "promote", "promoted", 100, 0, 0),
    ("first failure holds", canary(1), FAIL, 30, "hold", "canary", 25, 1, 0),
    ("failure limit rolls back", canary(1, failures=1), FAIL, 30, "rollback", "rolled_back",
     0, 2, 0),
    ("failure in shadow rolls back", shadow(failures=1), FAIL, 30, "rollback", "rolled_back",
     0, 2, 0),
    ("fail beats inconclusive", canary(1, inconclusive=2), BOTH, 30, "hold", "canary", 25, 1,
     0),
    ("inconclusive holds", canary(1), UNSURE, 30, "hold", "canary", 25, 0, 1),
    ("inconclusive limit pauses", canary(1, inconclusive=2), UNSURE, 30, "pause", "canary", 25,
     0, 3),
    ("no checks is inconclusive", canary(1), [], 30, "hold", "canary", 25, 0, 1),
    ("pending is no inconclusive", canary(1, inconclusive=2), PENDING, 5, "hold", "canary", 25,
     0, 0),
    ("a pass resets the counters", canary(1, failures=1, inconclusive=2), OK, 5, "hold",
     "canary", 25, 0, 0),
    ("paused: nothing happens", canary(1, paused=True), FAIL, 30, "hold", "canary", 25, 0, 0),
    ("ended: nothing happens", canary(1, phase="promoted", weight=100), FAIL, 30, "hold",
     "promoted", 100, 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    "status, checks, dt, action, phase, weight, failures, inconclusive",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    status: Status, checks: list[Check], dt: float, action: str, phase: str, weight: float,
    failures: int, inconclusive: int,
) -> None:  # fmt: skip
    d = decide(status, checks, POLICY, T + dt)
    assert (d.action, d.status.phase, d.status.weight) == (action, phase, weight)
    assert (d.status.failures, d.status.inconclusive) == (failures, inconclusive)
    if action in ("advance", "promote", "rollback", "pause"):
        assert d.status.history[-1].action == action
        assert d.status.history[-1].checks == tuple(checks)


def test_advancing_restarts_the_step_clock_and_ends_shadow() -> None:
    d = decide(shadow(), OK, POLICY, T + 25)
    assert d.status.step_started_at == T + 25 and d.status.canary_started_at == T + 25
    assert d.status.shadow_fraction == 0
    later = decide(d.status, OK, POLICY, T + 55)
    assert later.status.weight == 25 and later.status.canary_started_at == T + 25


def test_start_with_and_without_shadow() -> None:
    s = start(POLICY, T)
    assert (s.phase, s.shadow_fraction, s.weight, s.history[0].action) == ("shadow", 0.5, 0,
                                                                           "start")  # fmt: skip
    no_shadow = POLICY.model_copy(update={"shadow": ShadowPolicy(duration_s=0)})
    s = start(no_shadow, T)
    assert (s.phase, s.weight, s.step) == ("canary", 5, 0)


def req(action: str, id_: int = 1) -> Request:
    return Request(id=id_, action=action, at=T)  # type: ignore[arg-type]


REQUESTS = [
    # (name, status, action, -> decision action, phase, weight, paused)
    ("pause", canary(1), "pause", "pause", "canary", 25, True),
    ("pause twice", canary(1, paused=True), "pause", "refuse", "canary", 25, True),
    ("resume", canary(1, paused=True, inconclusive=3), "resume", "resume", "canary", 25, False),
    ("resume unpaused", canary(1), "resume", "refuse", "canary", 25, False),
    ("promote after a pass", canary(0, checks=tuple(OK)), "promote", "promote", "promoted",
     100, False),
    ("promote before engagement is due", canary(0, checks=tuple(PENDING)), "promote",
     "promote", "promoted", 100, False),
    ("promote while unsure", canary(0, checks=tuple(UNSURE)), "promote", "refuse", "canary", 5,
     False),
    ("promote after a failure", canary(0, checks=tuple(FAIL)), "promote", "refuse", "canary",
     5, False),
    ("promote before any analysis", canary(0), "promote", "refuse", "canary", 5, False),
    ("force promote after a failure", canary(0, checks=tuple(FAIL)), "force_promote",
     "promote", "promoted", 100, False),
    ("force promote while paused", canary(0, paused=True), "force_promote", "promote",
     "promoted", 100, False),
    ("abort", canary(2), "abort", "abort", "aborted", 0, False),
    ("rollback from shadow", shadow(), "rollback", "rollback", "rolled_back", 0, False),
    ("anything after the end", canary(1, phase="rolled_back", weight=0), "promote", "refuse",
     "rolled_back", 0, False),
]  # fmt: skip


@pytest.mark.parametrize(
    "status, action, result, phase, weight, paused",
    [c[1:] for c in REQUESTS],
    ids=[c[0] for c in REQUESTS],
)
def test_on_request(
    status: Status, action: str, result: str, phase: str, weight: float, paused: bool
) -> None:
    d = on_request(status, req(action, 7), POLICY, T + 1)
    assert (d.action, d.status.phase, d.status.weight, d.status.paused) == (
        result, phase, weight, paused,
    )  # fmt: skip
    assert d.status.handled_request == 7
    assert d.status.history[-1].action == result
    assert action.split("_")[-1] in d.status.history[-1].reason


def test_policy_rejects_bad_steps_naming_them() -> None:
    for steps, words in [((5, 100), "steps[1]"), ((25, 5), "above the previous"),
                         ((0,), "steps[0]")]:  # fmt: skip
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse(RolloutPolicy, {"steps": list(steps)}, "rollout.policy")
    with pytest.raises(ConfigError, match=r"steps\[0\]: a 2.0 % canary holds 2 user cohorts"):
        parse(RolloutPolicy, {"steps": [2, 50]}, "rollout.policy")
    with pytest.raises(ConfigError, match="step_s must be >= interval_s"):
        parse(RolloutPolicy, {"interval_s": 60, "step_s": 30}, "rollout.policy")
    with pytest.raises(ConfigError, match="wieght"):
        parse(RolloutPolicy, {"wieght": 5}, "rollout.policy")
