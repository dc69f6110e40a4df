"""Champion / challenger routing: sticky canary buckets and the shadow fraction.

Users fall into 100 fixed engagement cohorts (a stable hash of their id). A route
table's salt orders the cohorts afresh, and a canary of w% serves the challenger to
the first w of them (a fractional weight takes part of the next one). So raising the
weight only adds users (nobody flips back), a user sees the same variant at a given
weight, the challenger's users form a fixed, analysable group - what a recommender's
A/B analysis needs and what KServe, Seldon, Flagger and Argo Rollouts (random per
request) do not offer - and at whole percentages that group is a set of whole cohorts,
whose engagement before the rollout Prometheus already holds (the rollout analysis
adjusts for it). Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator

from vidrec.config import COHORTS, Setting

BUCKETS = 10_000
Variant = Literal["champion", "challenger"]


def bucket(user_id: int | str, salt: str = "vidrec") -> int:
    """Stable bucket in [0, BUCKETS): the same on every replica, process and version."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class RouteTable(Setting):
    """Which model version serves whom. Changed live; `version` orders the changes."""

    version: int = Field(0, ge=0, description="increases with every change")
    champion: str = Field(min_length=1, description="registry version serving by default")
    challenger: str | None = Field(None, description="registry version under test, if any")
    canary_percent: float = Field(
        0.0, ge=0, le=100, description="share of users (sticky buckets) the challenger serves"
    )
    shadow_fraction: float = Field(
        0.0, ge=0, le=1, description="share of requests also sent to the challenger, unseen"
    )
    salt: str = Field("vidrec", min_length=1, description="bucket hash salt: a new cohort")

    @model_validator(mode="after")
    def _challenger_needed(self) -> RouteTable:
        if self.challenger is None and (self.canary_percent > 0 or self.shadow_fraction > 0):
            raise ValueError("canary_percent and shadow_fraction need a challenger")
        if self.challenger is not None and self.challenger == self.champion:
            raise ValueError("challenger must differ from champion")
        return self

    @property
    def canary_buckets(self) -> int:
        return round(self.canary_percent * BUCKETS / 100)


def cohort(user_id: int | str) -> str:
    """The user's engagement cohort, the same under every route table. Engagement counters
    carry it so the rollout can test per-cohort rates against each cohort's own past:
    users, not impressions, are the randomised units, and users differ a lot."""
    return str(bucket(user_id, "cohort") % COHORTS)


def route_bucket(user_id: int | str, salt: str) -> int:
    """The user's canary bucket under `salt`: their cohort's place in the salt's order of
    cohorts, then their place inside the cohort."""
    u = bucket(user_id, "cohort")
    return _slots(salt)[u % COHORTS] * (BUCKETS // COHORTS) + u // COHORTS


@lru_cache(maxsize=64)
def _slots(salt: str) -> tuple[int, ...]:
    """Each cohort's slot in this salt's order: a fresh random order per salt, so the same
    users are not the guinea pigs of every release."""
    order = sorted(range(COHORTS), key=lambda c: bucket(f"cohort-{c}", salt))
    slots = [0] * COHORTS
    for rank, c in enumerate(order):
        slots[c] = rank
    return tuple(slots)


def assign(table: RouteTable, user_id: int | str) -> Variant:
    """The variant that serves this user under this table."""
    if table.challenger is not None and route_bucket(user_id, table.salt) < table.canary_buckets:
        return "challenger"
    return "champion"


def shadowed(table: RouteTable, request_id: str, variant: Variant) -> bool:
    """Whether this request is also sent to the challenger in the background.

    Keyed on the request, not the user, so shadow load is a steady fraction;
    a request already served by the challenger is never shadowed.
    """
    if table.challenger is None or variant == "challenger" or table.shadow_fraction <= 0:
        return False
    return bucket(request_id, "shadow:" + table.salt) < round(table.shadow_fraction * BUCKETS)
