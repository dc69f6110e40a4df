"""A JSON settings file that may change while the app runs, parsed into a strict model.

Re-read only when the file is replaced (writers replace atomically, so a read
never sees half a file); a bad file is a SchemaError naming it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Generic, TypeVar

from vidrec.config import Strict, parse
from vidrec.errors import SchemaError

M = TypeVar("M", bound=Strict)


class WatchedJson(Generic[M]):
    def __init__(self, path: Path, model: type[M]) -> None:
        self.path, self.model = path, model
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._value: M | None = None

    def get(self) -> M | None:
        """The current value; None while the file does not exist."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every replace is a new inode
        with self._lock:
            if self._value is None or stamp != self._seen:
                self._value = parse(self.model, self.path.read_text(), str(self.path), SchemaError)
                self._seen = stamp
            return self._value

    def forget(self) -> None:
        with self._lock:
            self._value, self._seen = None, None
