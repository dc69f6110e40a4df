"""Embedded online store on SQLite: the default, no server needed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import islice

from vidrec.errors import InvalidInput
from vidrec.features.store import Key, Row, decode_row, encode_key, encode_row, new_token

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (entity TEXT, key TEXT, payload BLOB,
                                     PRIMARY KEY (entity, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot_meta (entity TEXT PRIMARY KEY, as_of INTEGER);
CREATE TABLE IF NOT EXISTS snapshot_version (entity TEXT PRIMARY KEY, token TEXT);
CREATE TABLE IF NOT EXISTS history (user_id INTEGER, ts INTEGER, video_id INTEGER);
CREATE INDEX IF NOT EXISTS history_by_user ON history (user_id, ts, video_id);
"""


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:  # no such directory, not writable, not a database
            raise InvalidInput(f"online store sqlite:///{path}: {exc}", file=path) from exc

    def write_snapshot(self, entity: str, as_of: int, rows: Iterable[tuple[Key, Row]]) -> int:
        n = 0
        it = iter(rows)
        self.db.execute("BEGIN")
        try:
            # readers of another connection keep seeing the old snapshot until COMMIT
            self.db.execute("DELETE FROM snapshot WHERE entity = ?", (entity,))
            while batch := list(islice(it, 10_000)):
                self.db.executemany(
                    "INSERT INTO snapshot VALUES (?, ?, ?)",
                    [(entity, encode_key(k), encode_row(r)) for k, r in batch],
                )
                n += len(batch)
            self.db.execute("INSERT OR REPLACE INTO snapshot_meta VALUES (?, ?)", (entity, as_of))
            self.db.execute(
                "INSERT OR REPLACE INTO snapshot_version VALUES (?, ?)", (entity, new_token())
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return n

    def read(self, entity: str, keys: Sequence[Key]) -> list[Row | None]:
        enc = [encode_key(k) for k in keys]
        found: dict[str, Row] = {}
        for lo in range(0, len(enc), 500):
            part = enc[lo : lo + 500]
            q = (
                f"SELECT key, payload FROM snapshot WHERE entity = ? AND key IN "
                f"({','.join('?' * len(part))})"
            )
            found.update((k, decode_row(p)) for k, p in self.db.execute(q, (entity, *part)))
        return [found.get(k) for k in enc]

    def snapshot_time(self, entity: str) -> int | None:
        row = self.db.execute(
            "SELECT as_of FROM snapshot_meta WHERE entity = ?", (entity,)
        ).fetchone()
        return None if row is None else int(row[0])

    def snapshot_versions(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT entity, token FROM snapshot_version").fetchall())

    def replace_history(self, events: Iterable[tuple[int, int, int]]) -> int:
        it, n = iter(events), 0
        self.db.execute("BEGIN")  # other connections read the old history until COMMIT
        try:
            self.db.execute("DELETE FROM history")
            while batch := list(islice(it, 50_000)):
                self.db.executemany("INSERT INTO history VALUES (?, ?, ?)", batch)
                n += len(batch)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return n

    def history(self, user_id: int, before_ts: int, n: int) -> list[int]:
        rows = self.db.execute(
            "SELECT video_id FROM history WHERE user_id = ? AND ts < ? "
            "ORDER BY ts DESC, video_id DESC LIMIT ?",
            (user_id, before_ts, n),
        ).fetchall()
        return [int(r[0]) for r in reversed(rows)]

    def close(self) -> None:
        self.db.close()
