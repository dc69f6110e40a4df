"""The online store interface and the factory that picks an implementation by URL.

An online store keeps, per entity key, the latest materialised snapshot of that
entity's batch features, plus each user's stream of available watches (for
the realtime last-N feature). Values round-trip exactly: floats are stored as
float64 text (orjson), so the skew check can demand equality, not closeness.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from vidrec.config import REDIS_URLS
from vidrec.errors import ConfigError

Key = tuple[Any, ...]
Row = dict[str, Any]


class OnlineStore(Protocol):
    def write_snapshot(self, entity: str, as_of: int, rows: Iterable[tuple[Key, Row]]) -> int:
        """Replace the entity's snapshot; returns rows written."""

    def read(self, entity: str, keys: Sequence[Key]) -> list[Row | None]:
        """Rows in key order; None where the key has no row."""

    def snapshot_time(self, entity: str) -> int | None: ...

    def snapshot_versions(self) -> dict[str, str]:
        """Entity -> a token that changes with every write_snapshot, even one at the same
        as_of: what a cache of snapshot rows checks. Entities never written are absent."""

    def replace_history(self, events: Iterable[tuple[int, int, int]]) -> int:
        """The history becomes exactly these (user_id, available_ts, video_id) events, in
        any order (a refresh must not repeat what an earlier one loaded); returns their
        number. Readers see each user's old history or new one, never a mix."""

    def history(self, user_id: int, before_ts: int, n: int) -> list[int]:
        """Video ids of the user's last n events available strictly before before_ts,
        oldest first; ties at one timestamp ordered by video id."""

    def close(self) -> None: ...


def encode_key(key: Key) -> str:
    return orjson.dumps(list(key)).decode()


def encode_row(row: Row) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_row(blob: bytes | str) -> Row:
    return dict(orjson.loads(blob))


def new_token() -> str:
    """A snapshot version: unique per write, across processes and restarts."""
    return uuid.uuid4().hex


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite://").removeprefix("/") or ":memory:"


def in_memory(url: str) -> bool:
    """Whether the store at `url` lives only as long as the process that opens it."""
    return url.startswith("sqlite://") and _sqlite_path(url) == ":memory:"


def sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite store (opening it creates it, empty)."""
    if not url.startswith("sqlite://") or in_memory(url):
        return None
    return Path(_sqlite_path(url))


def open_store(url: str) -> OnlineStore:
    """sqlite:/// (in memory), sqlite:///path/to.db, or redis://host:port/db."""
    if url.startswith("sqlite://"):
        from vidrec.features.sqlite_store import SQLiteStore

        return SQLiteStore(_sqlite_path(url))
    if url.startswith(REDIS_URLS):
        from vidrec.features.redis_store import RedisStore

        return RedisStore(url)
    raise ConfigError(
        f"features.online_store: unsupported URL {url!r} "
        "(use sqlite:///path.db or redis://host:port/db)",
        key="online_store",
    )
