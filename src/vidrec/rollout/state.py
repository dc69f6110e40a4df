"""The rollout object: what a user asked for (`spec`) and where it stands (`status`).

Shaped like a Kubernetes object so the local JSON file and the chart's ModelRollout
hold the same thing: the controller reconciles `status` towards `spec`; a human's
promote / abort / rollback / pause / resume is a numbered `request` in the spec that
the controller acknowledges in `status.handled_request`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vidrec.config import RolloutPolicy, Strict
from vidrec.rollout.analysis import Check

Phase = Literal["shadow", "canary", "promoted", "rolled_back", "aborted"]
TERMINAL: tuple[Phase, ...] = ("promoted", "rolled_back", "aborted")
RequestAction = Literal["promote", "force_promote", "abort", "rollback", "pause", "resume"]
Action = Literal[
    "start", "hold", "advance", "promote", "rollback", "abort", "pause", "resume", "refuse"
]


class Request(Strict):
    id: int = Field(ge=1)
    action: RequestAction
    at: float
    by: str = "cli"


class Spec(Strict):
    version: str = Field(min_length=1, description="the challenger's registry version")
    champion: str = Field(min_length=1, description="the champion it must beat")
    policy: RolloutPolicy = RolloutPolicy()
    request: Request | None = None


class Event(Strict):
    """One history entry: what the controller did, when, and the measurements behind it."""

    at: float
    action: Action
    phase: Phase
    weight: float
    reason: str
    checks: tuple[Check, ...] = ()


class Status(Strict):
    phase: Phase
    step: int = Field(-1, ge=-1, description="index into policy.steps; -1 in shadow")
    weight: float = Field(0.0, ge=0, le=100, description="canary % of users on the challenger")
    shadow_fraction: float = Field(0.0, ge=0, le=1)
    started_at: float
    step_started_at: float
    canary_started_at: float | None = None
    last_analysis_at: float | None = None
    failures: int = Field(0, ge=0, description="consecutive failed analyses")
    inconclusive: int = Field(0, ge=0, description="consecutive inconclusive analyses")
    paused: bool = False
    reason: str = ""
    checks: tuple[Check, ...] = ()
    handled_request: int = 0
    finalized: bool = Field(False, description="the registry knows the terminal outcome")
    history: tuple[Event, ...] = ()

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL

    @property
    def finished(self) -> bool:
        """Ended and the registry told: nothing is left for the controller to do."""
        return not self.active and self.finalized


class Rollout(Strict):
    generation: int = Field(0, ge=0, description="increases with every write (optimistic lock)")
    spec: Spec
    status: Status
