"""Online store on Redis, chosen by a redis:// URL.

Snapshots are hashes `vidrec:snap:<entity>` (field = key); a new snapshot is
written to a temporary hash and RENAMEd over the old one, so readers never see
half of it. Histories are sorted sets `vidrec:hist:<user>` scored by time;
members sort by video id within a timestamp, as the offline join does. A new
history is written the same way, per user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import count, islice

import redis

from vidrec.errors import NotReady
from vidrec.features.store import Key, Row, decode_row, encode_key, encode_row, new_token

_OFFSET = 1 << 63  # makes negative ids sort correctly as zero-padded text


class RedisStore:
    def __init__(self, url: str, prefix: str = "vidrec") -> None:
        self.r = redis.Redis.from_url(url)
        self.prefix = prefix
        try:
            self.r.ping()
        except redis.ConnectionError as exc:
            raise NotReady(f"online store {url}: cannot connect: {exc}", url=url) from exc

    def write_snapshot(self, entity: str, as_of: int, rows: Iterable[tuple[Key, Row]]) -> int:
        final, tmp = f"{self.prefix}:snap:{entity}", f"{self.prefix}:snap:{entity}:new"
        self.r.delete(tmp)
        it, n = iter(rows), 0
        while batch := list(islice(it, 10_000)):
            self.r.hset(tmp, mapping={encode_key(k): encode_row(r) for k, r in batch})
            n += len(batch)
        pipe = self.r.pipeline()
        if n:
            pipe.rename(tmp, final)
        else:
            pipe.delete(final)
        pipe.hset(f"{self.prefix}:snap_meta", entity, as_of)
        pipe.hset(f"{self.prefix}:snap_version", entity, new_token())
        pipe.execute()  # MULTI/EXEC: the rows, their time and version change together
        return n

    def read(self, entity: str, keys: Sequence[Key]) -> list[Row | None]:
        if not keys:
            return []
        blobs = self.r.hmget(f"{self.prefix}:snap:{entity}", [encode_key(k) for k in keys])
        return [None if b is None else decode_row(b) for b in blobs]

    def snapshot_time(self, entity: str) -> int | None:
        v = self.r.hget(f"{self.prefix}:snap_meta", entity)
        return None if v is None else int(v)

    def snapshot_versions(self) -> dict[str, str]:
        got = self.r.hgetall(f"{self.prefix}:snap_version")
        return {k.decode(): v.decode() for k, v in got.items()}

    def replace_history(self, events: Iterable[tuple[int, int, int]]) -> int:
        """Written beside under `hist_new:` keys, then each user's set RENAMEd over the old
        one (MULTI/EXEC per 10,000 users); users the events no longer name are deleted."""
        new, old = f"{self.prefix}:hist_new:", f"{self.prefix}:hist:"
        for key in self.r.scan_iter(f"{new}*", count=10_000):  # a run cut short left them
            self.r.delete(key)
        users: set[int] = set()
        seq, it, n = count(), iter(events), 0
        while batch := list(islice(it, 10_000)):
            pipe = self.r.pipeline(transaction=False)
            for user, ts, video in batch:
                # the suffix keeps repeated (video, ts) events distinct
                member = f"{int(video) + _OFFSET:020d}:{next(seq)}"
                pipe.zadd(f"{new}{int(user)}", {member: int(ts)})
                users.add(int(user))
            pipe.execute()
            n += len(batch)
        stale = [k for k in self.r.scan_iter(f"{old}*", count=10_000)
                 if int(k[len(old):]) not in users]  # fmt: skip
        swaps = [(f"{new}{u}", f"{old}{u}") for u in users]
        for lo in range(0, max(len(swaps), len(stale)), 10_000):
            pipe = self.r.pipeline()  # MULTI/EXEC: each user's history swaps whole
            for src, dst in swaps[lo : lo + 10_000]:
                pipe.rename(src, dst)
            for key in stale[lo : lo + 10_000]:
                pipe.delete(key)
            pipe.execute()
        return n

    def history(self, user_id: int, before_ts: int, n: int) -> list[int]:
        members = self.r.zrevrangebyscore(
            f"{self.prefix}:hist:{int(user_id)}", f"({int(before_ts)}", "-inf", start=0, num=n
        )
        return [int(m.split(b":")[0]) - _OFFSET for m in reversed(members)]

    def close(self) -> None:
        self.r.close()
