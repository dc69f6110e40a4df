"""The controller's own metrics (`vidrec_rollout_` prefix), for the Rollout dashboard and
alerts: phase, weight, and each check's last value against its threshold."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from vidrec.rollout.state import Rollout

PHASES = ("shadow", "canary", "promoted", "rolled_back", "aborted")
RESULTS = ("pass", "fail", "inconclusive", "pending")


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.phase = Gauge("vidrec_rollout_phase", "1 for the rollout's current phase",
                           ["version", "phase"], registry=r)  # fmt: skip
        self.weight = Gauge("vidrec_rollout_weight_percent", "Users on the challenger (%)",
                            ["version"], registry=r)  # fmt: skip
        self.paused = Gauge("vidrec_rollout_paused", "1 while paused for a human", ["version"],
                            registry=r)  # fmt: skip
        self.check_value = Gauge("vidrec_rollout_check_value", "Last measured value per check",
                                 ["version", "check"], registry=r)  # fmt: skip
        self.check_threshold = Gauge("vidrec_rollout_check_threshold", "Its threshold",
                                     ["version", "check"], registry=r)  # fmt: skip
        self.check_result = Gauge("vidrec_rollout_check_result", "1 for the check's last result",
                                  ["version", "check", "result"], registry=r)  # fmt: skip
        self.actions = Counter("vidrec_rollout_actions", "Controller actions taken",
                               ["action"], registry=r)  # fmt: skip

    def update(self, ro: Rollout) -> None:
        v, st = ro.spec.version, ro.status
        for phase in PHASES:
            self.phase.labels(v, phase).set(1.0 if st.phase == phase else 0.0)
        self.weight.labels(v).set(st.weight)
        self.paused.labels(v).set(1.0 if st.paused else 0.0)
        for c in st.checks:
            if c.value is not None:
                self.check_value.labels(v, c.name).set(c.value)
            if c.threshold is not None:
                self.check_threshold.labels(v, c.name).set(c.threshold)
            for result in RESULTS:
                self.check_result.labels(v, c.name, result).set(float(c.result == result))
