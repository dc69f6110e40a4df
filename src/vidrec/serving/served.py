"""What the server remembers of each request it served, so that feedback joins to it.

Kept in the server process (`MemoryServed`: the last `remember_requests`) or shared by
every model-server pod (`RedisServed`: each for `served_ttl_s`). Behind a Kubernetes
Service an outcome reaches any pod, and in KServe's Knative canary any revision, not
the one that served it: kept per process, it was rejected there as `unknown_request`,
and its click went uncounted (a canary at 5 % would have shown the challenger 5 % of
its clicks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vidrec.config import REDIS_URLS
from vidrec.errors import ConfigError


@dataclass(slots=True)
class ServedRequest:
    """What an outcome's join needs of a served request, and no more. The memory store keeps
    100k of these, and a full collection walks every container they hold, stopping the
    server meanwhile: kept as the request and response models, a request was 29 tracked
    objects (a full pass over 600k took 0.35-0.6 s here); as this, it is one (its tuple of
    ints is untracked)."""

    request_id: str
    ts: int
    user_id: int
    variant: str
    version: str
    videos: tuple[int, ...]  # as shown: a video's position is its index
    answered: set[int] | None = None  # the memory store's, made at the first outcome


class ServedRequests(Protocol):
    def claim(self, request_ids: list[str]) -> set[str]:
        """Take client-given ids for requests about to be served. Returns those already
        taken: in flight or remembered, on any server sharing the store. When any is
        taken, none of `request_ids` is held."""

    def release(self, request_ids: list[str]) -> None:
        """Free claimed ids whose requests failed: the client may retry with them.
        Remembering a request ends its claim too."""

    def remember(self, served: list[ServedRequest]) -> None: ...

    def find(self, request_ids: list[str]) -> list[ServedRequest | None]:
        """Each id's served request, None where it is unknown or forgotten."""

    def first(self, outcomes: list[tuple[str, int]]) -> list[bool]:
        """For each (request id, video id) of remembered requests, whether it is the first
        outcome for that video of that request (recorded now: a pair repeated in the list
        is first once)."""


def open_served(url: str, remember: int, ttl_s: float, hold_s: float = 60.0) -> ServedRequests:
    """ "" (this process) or redis://host:port/db (shared by the pods). `hold_s`: longer
    than any request takes to be answered (a claim a crashed pod left expires then)."""
    if not url:
        from vidrec.serving.served_memory import MemoryServed

        return MemoryServed(remember)
    if url.startswith(REDIS_URLS):
        from vidrec.serving.served_redis import RedisServed

        return RedisServed(url, ttl_s, hold_s)
    raise ConfigError(
        f"serving.served_store: unsupported URL {url!r} (empty: this process; "
        "redis://host:port/db: shared by every model-server pod)",
        key="served_store",
    )
