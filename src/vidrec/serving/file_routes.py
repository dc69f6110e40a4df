"""The route table as a JSON file: atomic replace on write, re-read when it changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from vidrec.config import parse
from vidrec.errors import Conflict, NotReady, SchemaError
from vidrec.serving.routing import RouteTable


class FileRouteSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._table: RouteTable | None = None

    def get(self) -> RouteTable:
        try:
            st = self.path.stat()
        except FileNotFoundError as exc:
            raise NotReady(
                f"route table {self.path} does not exist yet", file=str(self.path)
            ) from exc
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every replace is a new inode
        with self._lock:
            if self._table is None or stamp != self._seen:
                # a replace is atomic, so the file is always a whole table
                self._table = parse(RouteTable, self.path.read_text(), str(self.path), SchemaError)
                self._seen = stamp
            return self._table

    def set(self, table: RouteTable, expected_version: int | None = None) -> RouteTable:
        with self._lock:
            current = self._read_current()
            if expected_version is not None and current != expected_version:
                raise Conflict(
                    f"route table is at version {current}, not {expected_version}: re-read it",
                    current=current,
                    expected=expected_version,
                )
            stored = table.model_copy(update={"version": (current or 0) + 1})
            tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(stored.model_dump_json(indent=2))
            tmp.replace(self.path)
            self._table, self._seen = None, None
            return stored

    def _read_current(self) -> int | None:
        if not self.path.exists():
            return None
        return parse(RouteTable, self.path.read_text(), str(self.path), SchemaError).version
