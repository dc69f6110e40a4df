"""What the controller does next: pure functions of (status, measurements or request, now).

`decide` runs after each analysis: any failed check counts towards `failure_limit`
(then roll back), any inconclusive one towards `inconclusive_limit` (then pause for a
human); all passing once the step is `due` (held as long as it must be) advances it
(shadow -> first canary weight -> ... -> promotion). Pending checks (engagement before
the step is due) neither hold nor pass. `on_request` applies a human's command. Neither
touches routes or the registry: the controller applies the status they return.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidrec.config import RolloutPolicy
from vidrec.rollout.analysis import Check
from vidrec.rollout.state import Action, Event, Phase, Request, Status


@dataclass(frozen=True)
class Decision:
    action: Action
    status: Status


def start(policy: RolloutPolicy, now: float) -> Status:
    """A new rollout's status: shadow first, unless the policy has none."""
    if policy.shadow.duration_s > 0:
        status = Status(phase="shadow", shadow_fraction=policy.shadow.fraction, started_at=now,
                        step_started_at=now)  # fmt: skip
        return _record(status, "start", now, "shadow phase started")
    status = Status(phase="shadow", started_at=now, step_started_at=now)
    return _advance(status, policy, now, "no shadow phase in the policy").status


def decide(status: Status, checks: list[Check], policy: RolloutPolicy, now: float) -> Decision:
    if not status.active or status.paused:
        return Decision("hold", status)
    analysed = status.model_copy(update={"checks": tuple(checks), "last_analysis_at": now})
    failed = [c.name for c in checks if c.result == "fail"]
    unsure = [c.name for c in checks if c.result == "inconclusive"] or (
        [] if checks else ["(no checks)"]
    )
    if failed:
        return _failed(analysed, failed, policy, now)
    if unsure:
        return _unsure(analysed, unsure, policy, now)
    passed = analysed.model_copy(update={"failures": 0, "inconclusive": 0})
    if not step_due(status, policy, now):
        return Decision("hold", passed)
    held = now - status.step_started_at
    return _advance(passed, policy, now, f"all checks passed for {held:.0f} s")


def step_due(status: Status, policy: RolloutPolicy, now: float) -> bool:
    """The current step (shadow or a canary weight) has been held as long as it must."""
    need = policy.shadow.duration_s if status.phase == "shadow" else policy.step_s
    return now - status.step_started_at >= need


def on_request(status: Status, req: Request, policy: RolloutPolicy, now: float) -> Decision:
    """A human's command; refused (and recorded as such) when it makes no sense now."""
    status = status.model_copy(update={"handled_request": req.id})
    if not status.active:
        return _refuse(status, req, f"the rollout is already {status.phase}", now)
    by = f"{req.action} requested by {req.by}"
    match req.action:
        case "pause":
            if status.paused:
                return _refuse(status, req, "already paused", now)
            return Decision("pause", _record(status.model_copy(update={"paused": True}),
                                             "pause", now, by))  # fmt: skip
        case "resume":
            if not status.paused:
                return _refuse(status, req, "not paused", now)
            resumed = status.model_copy(update={"paused": False, "failures": 0, "inconclusive": 0})
            return Decision("resume", _record(resumed, "resume", now, by))
        case "promote":
            bad = [f"{c.name} {c.result}" for c in status.checks
                   if c.result in ("fail", "inconclusive")]  # fmt: skip
            if bad or not status.checks:
                why = ", ".join(bad) if bad else "no analysis yet"
                return _refuse(status, req, f"the last analysis did not pass ({why}); "
                               "use --force to promote anyway", now)  # fmt: skip
            return _finish(status, "promote", "promoted", now, by)
        case "force_promote":
            return _finish(status, "promote", "promoted", now, by + " (forced)")
        case "abort":
            return _finish(status, "abort", "aborted", now, by)
        case "rollback":
            return _finish(status, "rollback", "rolled_back", now, by)


def _failed(status: Status, failed: list[str], policy: RolloutPolicy, now: float) -> Decision:
    n = status.failures + 1
    why = f"failed: {', '.join(failed)} ({n} of {policy.failure_limit} in a row)"
    status = status.model_copy(update={"failures": n, "inconclusive": 0})
    if n >= policy.failure_limit:
        return _finish(status, "rollback", "rolled_back", now, why)
    return Decision("hold", _record(status, "hold", now, why))


def _unsure(status: Status, unsure: list[str], policy: RolloutPolicy, now: float) -> Decision:
    n = status.inconclusive + 1
    why = f"inconclusive: {', '.join(unsure)} ({n} of {policy.inconclusive_limit} in a row)"
    status = status.model_copy(update={"inconclusive": n, "failures": 0})
    if n >= policy.inconclusive_limit:
        paused = status.model_copy(update={"paused": True})
        return Decision("pause", _record(paused, "pause", now, why + ": a human decides"))
    return Decision("hold", _record(status, "hold", now, why))


def _advance(status: Status, policy: RolloutPolicy, now: float, why: str) -> Decision:
    nxt = status.step + 1
    if nxt >= len(policy.steps):
        return _finish(status, "promote", "promoted", now, why)
    moved = status.model_copy(
        update={
            "phase": "canary", "step": nxt, "weight": policy.steps[nxt], "shadow_fraction": 0.0,
            "step_started_at": now,
            "canary_started_at": status.canary_started_at if status.step >= 0 else now,
        }
    )  # fmt: skip
    return Decision("advance", _record(moved, "advance", now, why))


def _finish(status: Status, action: Action, phase: Phase, now: float, why: str) -> Decision:
    done = status.model_copy(
        update={"phase": phase, "weight": 100.0 if phase == "promoted" else 0.0,
                "shadow_fraction": 0.0, "paused": False, "step_started_at": now}
    )  # fmt: skip
    return Decision(action, _record(done, action, now, why))


def _refuse(status: Status, req: Request, why: str, now: float) -> Decision:
    return Decision("refuse", _record(status, "refuse", now, f"{req.action} refused: {why}"))


def _record(status: Status, action: Action, now: float, why: str) -> Status:
    event = Event(at=now, action=action, phase=status.phase, weight=status.weight, reason=why,
                  checks=status.checks)  # fmt: skip
    return status.model_copy(update={"reason": why, "history": (*status.history, event)})
