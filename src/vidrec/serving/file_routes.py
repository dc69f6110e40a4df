"""The route table as a JSON file: atomic replace on write, re-read when it changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from vidrec.config import parse
from vidrec.errors import Conflict, NotReady, SchemaError
from vidrec.serving.routing import RouteTable
from vidrec.serving.watched import WatchedJson


class FileRouteSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = WatchedJson(path, RouteTable)
        self._lock = threading.Lock()

    @property
    def error(self) -> SchemaError | None:
        """Why the file is not in force (the last valid table is), or None."""
        return self._file.error

    def get(self) -> RouteTable:
        try:
            table = self._file.get()
        except SchemaError as exc:  # never valid: the server's to fix, not the client's
            raise NotReady(f"route table {exc.message}", file=str(self.path)) from None
        if table is None:
            raise NotReady(f"route table {self.path} does not exist yet: `vidrec serve` writes "
                           "it when it starts ([rollout] routes, or its --routes)",
                           file=str(self.path))  # fmt: skip
        return table

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
            write_atomic(self.path, stored.model_dump_json(indent=2))
            self._file.forget()
            return stored

    def _read_current(self) -> int | None:
        if not self.path.exists():
            return None
        return parse(RouteTable, self.path.read_text(), str(self.path), SchemaError).version


def write_atomic(path: Path, text: str) -> None:
    """Write beside, then replace: readers see the old file or the new one, never half."""
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    tmp.replace(path)
