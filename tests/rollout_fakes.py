"""Fakes for the rollout controller's tests (pure logic): scripted measurements, a registry
that only keeps aliases and tags, a clock the test moves."""

from __future__ import annotations

import math
from typing import Any

from vidrec.rollout.analysis import Cohort, Measurements, ShadowStats, VariantStats
from vidrec.rollout.state import Rollout

COHORTS = tuple(Cohort(100, 10 + i % 3, 100.0 + i % 5) for i in range(20))
FAST = ((0.05, 200.0), (math.inf, 200.0))
GOOD = VariantStats(200, 0, 0.02, FAST, COHORTS)
SLOW = VariantStats(200, 0, 0.5, ((0.05, 0.0), (math.inf, 200.0)), COHORTS)


class Script:
    """Measurements the test chooses, per phase."""

    def __init__(self) -> None:
        self.challenger = GOOD
        self.calls = 0

    def measure(self, ro: Rollout, now: float) -> Measurements:
        self.calls += 1
        if ro.status.phase == "shadow":
            return Measurements(shadow=ShadowStats(100, 0, 0.6))
        return Measurements(champion=GOOD, challenger=self.challenger)


class Registry:
    def __init__(self) -> None:
        self.aliases = {"champion": 1}
        self.tags: dict[tuple[int, str], str] = {}

    def set_alias(self, alias: str, version: int) -> None:
        self.aliases[alias] = version

    def delete_alias(self, alias: str) -> None:
        self.aliases.pop(alias, None)

    def get(self, ref: str) -> Any:
        version = int(ref)
        return type("V", (), {"aliases": [a for a, v in self.aliases.items() if v == version]})

    def tag(self, version: int, key: str, value: str) -> None:
        self.tags[(version, key)] = value


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t
