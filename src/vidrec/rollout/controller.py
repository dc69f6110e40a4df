"""The rollout controller: read the rollout, decide, store, then apply.

Each tick: re-apply what the stored status says (routes; the registry once the rollout
has ended), handle a human's pending request, or, once per interval, measure, analyse
and decide. The decision is stored *before* it is applied, and applying is idempotent,
so a controller killed at any point and started again resumes from the stored state:
the step clock and the last analysis time are stored too, so it never double-steps.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from vidrec.errors import Conflict
from vidrec.registry.registry import Registry
from vidrec.rollout.analysis import Measurements, analyse
from vidrec.rollout.decision import Decision, decide, on_request, step_due
from vidrec.rollout.metrics import RolloutMetrics
from vidrec.rollout.state import Rollout
from vidrec.rollout.store import RolloutStore
from vidrec.rollout.traffic_router import TrafficRouter, routes_for

log = logging.getLogger("vidrec.rollout")


class Measurer(Protocol):
    def measure(self, rollout: Rollout, now: float) -> Measurements: ...


class Controller:
    def __init__(
        self,
        store: RolloutStore,
        router: TrafficRouter,
        measurer: Measurer,
        registry: Registry | None = None,
        metrics: RolloutMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.router, self.measurer = store, router, measurer
        self.registry, self.metrics, self.clock = registry, metrics, clock

    def tick(self) -> str | None:
        """One reconciliation; the action taken, if any."""
        ro = self.store.get()
        if ro is None:
            return None
        ro = self._apply(ro)
        now = self.clock()
        decision = self._next(ro, now)
        if decision is None:
            return None
        try:
            stored = self.store.put(ro.model_copy(update={"status": decision.status}),
                                    ro.generation)  # fmt: skip
        except Conflict:  # a CLI request landed meanwhile: decide again on the next tick
            return None
        if decision.action != "hold":
            log.info("rollout v%s: %s (%s)", ro.spec.version, decision.action,
                     decision.status.reason)  # fmt: skip
        if self.metrics:
            self.metrics.actions.labels(decision.action).inc()
        self._apply(stored)
        return decision.action

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a failed tick (registry or disk hiccup) is retried
                log.exception("rollout tick failed")
            stop.wait(poll_s)

    def _next(self, ro: Rollout, now: float) -> Decision | None:
        policy, st, req = ro.spec.policy, ro.status, ro.spec.request
        if req is not None and req.id > st.handled_request:
            return on_request(st, req, policy, now)
        if not st.active or st.paused:
            return None
        if now - (st.last_analysis_at or st.step_started_at) < policy.interval_s:
            return None
        due = step_due(st, policy, now)
        checks = analyse(st.phase, self.measurer.measure(ro, now), policy, due)
        return decide(st, checks, policy, now)

    def _apply(self, ro: Rollout) -> Rollout:
        """Make routes and registry match the stored status (cheap when they already do).
        A finished, finalized rollout is hands-off: people may route by hand after it."""
        if self.metrics:
            self.metrics.update(ro)
        if ro.status.finished:
            return ro
        want, have = routes_for(ro), self.router.get_routes()
        if want.salt is None:
            have = dataclasses.replace(have, salt=None)
        if have != want:
            self.router.set_routes(want)
        if ro.status.active:
            return ro
        self._finalize(ro)
        done = ro.model_copy(update={"status": ro.status.model_copy(update={"finalized": True})})
        try:
            return self.store.put(done, ro.generation)
        except Conflict:
            return ro

    def _finalize(self, ro: Rollout) -> None:
        """Tell the registry how the rollout ended: promotion moves the champion alias."""
        if self.registry is None:
            return
        version = int(ro.spec.version)
        self.registry.tag(version, "rollout", ro.status.phase)
        self.registry.tag(version, "rollout_reason", ro.status.reason[:500])
        if ro.status.phase == "promoted":
            self.registry.set_alias("champion", version)
        aliases = self.registry.get(ro.spec.version).aliases
        if "challenger" in aliases:  # it is not under test any more (nor served on restart)
            self.registry.delete_alias("challenger")
