"""Served requests in Redis, shared by every model-server pod, each kept `ttl_s`.

A request is one key (its join fields as JSON), its answered videos a set beside it; an
outcome's duplicate check is Redis's own SADD, so two pods never both count one. A
client-given request id is claimed by SET NX of a key of its own, held `hold_s` (until
the request is remembered, which the claim also checks): two pods never both serve one
id. Calls block the server's event loop for a loopback round trip: one per answered call
(its requests together), one more when the client gave ids, and two per feedback post,
whatever its size. An unreachable Redis is a 503, never a 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import redis

from vidrec.errors import NotReady
from vidrec.serving.served import ServedRequest

PREFIX = "vidrec:served:"
CLAIM = "vidrec:claimed:"

log = logging.getLogger(__name__)


class RedisServed:
    def __init__(self, url: str, ttl_s: float, hold_s: float = 60.0) -> None:
        self.url, self.ttl, self.hold = url, max(1, round(ttl_s)), max(1, math.ceil(hold_s))
        self.r = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def claim(self, request_ids: list[str]) -> set[str]:
        if not request_ids:
            return set()
        p = self.r.pipeline(transaction=False)
        for rid in request_ids:
            p.set(CLAIM + rid, 1, nx=True, ex=self.hold)
        for rid in request_ids:  # after the SETs: a claim that expired once remembered
            p.exists(PREFIX + rid)
        with self._reached():
            got = p.execute()
        n = len(request_ids)
        held = [rid for rid, ok in zip(request_ids, got[:n], strict=True) if ok]
        taken = {rid for rid, ok, served in zip(request_ids, got[:n], got[n:], strict=True)
                 if not ok or served}  # fmt: skip
        if taken:
            self.release(held)
        return taken

    def release(self, request_ids: list[str]) -> None:
        if not request_ids:
            return
        try:
            self.r.delete(*(CLAIM + rid for rid in request_ids))
        except redis.RedisError as exc:  # the claims expire within hold_s anyway
            log.warning("served-request store %s: claims not released: %s", self.url, exc)

    def remember(self, served: list[ServedRequest]) -> None:
        p = self.r.pipeline(transaction=False)
        for s in served:
            p.set(PREFIX + s.request_id, orjson.dumps([s.ts, s.user_id, s.variant, s.version,
                                                       s.videos]), ex=self.ttl)  # fmt: skip
        with self._reached():
            p.execute()

    def find(self, request_ids: list[str]) -> list[ServedRequest | None]:
        if not request_ids:
            return []
        with self._reached():
            blobs = self.r.mget([PREFIX + rid for rid in request_ids])
        return [
            None if b is None else _decode(rid, b)
            for rid, b in zip(request_ids, blobs, strict=True)
        ]

    def first(self, outcomes: list[tuple[str, int]]) -> list[bool]:
        if not outcomes:
            return []
        p = self.r.pipeline(transaction=False)
        for rid, video in outcomes:
            p.sadd(f"{PREFIX}{rid}:answered", video)
        for rid in dict.fromkeys(rid for rid, _ in outcomes):
            p.expire(f"{PREFIX}{rid}:answered", self.ttl)
        with self._reached():
            added = p.execute()
        return [a == 1 for a in added[: len(outcomes)]]

    @contextmanager
    def _reached(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise NotReady(f"served-request store {self.url}: {exc}", store=self.url) from None


def _decode(request_id: str, blob: bytes) -> ServedRequest:
    ts, user_id, variant, version, videos = orjson.loads(blob)
    return ServedRequest(request_id, ts, user_id, variant, version, tuple(videos))
