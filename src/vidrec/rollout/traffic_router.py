"""How traffic is moved: an interface (Flagger's Router), one implementation per file.

`app_router.AppRouter` writes serving's own route table (sticky user buckets, shadow);
`kserve_router.KServeRouter` sets an InferenceService's `canaryTrafficPercent` (Knative
mode). `routes_for` says what the routes must be for a rollout's status: the controller
re-applies it every tick, so a crash between storing a decision and applying it heals itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vidrec.config import RolloutPolicy
from vidrec.rollout.state import Rollout


@dataclass(frozen=True)
class Routes:
    champion: str
    challenger: str | None = None
    weight: float = 0.0  # % of users on the challenger
    shadow: float = 0.0  # share of requests shadowed to it
    salt: str | None = None  # bucket hash salt (None: keep the table's)


class TrafficRouter(Protocol):
    def validate(self, policy: RolloutPolicy) -> None:
        """Raise InvalidInput, naming the field, if this router cannot carry `policy` out."""

    def get_routes(self) -> Routes: ...

    def set_routes(self, routes: Routes) -> None: ...


def routes_for(rollout: Rollout) -> Routes:
    spec, st = rollout.spec, rollout.status
    if st.phase == "promoted":
        return Routes(champion=spec.version)
    if not st.active:
        return Routes(champion=spec.champion)
    # a salt per challenger: each rollout draws a fresh cohort, so the same users are not
    # the guinea pigs of every release
    return Routes(spec.champion, spec.version, st.weight, st.shadow_fraction, f"v{spec.version}")
