"""`TrafficRouter` over serving's live route table (`vidrec.serving.route_source`)."""

from __future__ import annotations

from vidrec.config import RolloutPolicy
from vidrec.errors import Conflict
from vidrec.rollout.traffic_router import Routes
from vidrec.serving.route_source import RouteSource
from vidrec.serving.routing import RouteTable


class AppRouter:
    def __init__(self, source: RouteSource) -> None:
        self.source = source

    def validate(self, policy: RolloutPolicy) -> None:
        """Serving's router carries out any valid policy (sticky cohorts, shadow)."""

    def get_routes(self) -> Routes:
        t = self.source.get()
        return Routes(t.champion, t.challenger, t.canary_percent, t.shadow_fraction, t.salt)

    def set_routes(self, routes: Routes) -> None:
        for _ in range(3):  # someone else wrote in between: re-read and try again
            current = self.source.get()
            table = RouteTable(
                version=current.version,
                champion=routes.champion,
                challenger=routes.challenger,
                canary_percent=routes.weight,
                shadow_fraction=routes.shadow,
                salt=routes.salt or current.salt,
            )
            try:
                self.source.set(table, expected_version=current.version)
                return
            except Conflict:
                continue
        raise Conflict("route table keeps changing under the rollout controller")
