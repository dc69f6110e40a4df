"""A JSON settings file that may change while the app runs, parsed into a strict model.

Re-read only when the file is replaced (writers replace atomically, so a read
never sees half a file). A bad file is a SchemaError naming it while no valid one
was read; after that, the last valid value stays in force and `error` says why the
file on disk is not (a typo in a hand-edited route table answered every request
with an error).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Generic, TypeVar

from vidrec.config import Strict, parse
from vidrec.errors import SchemaError

M = TypeVar("M", bound=Strict)
log = logging.getLogger(__name__)


class WatchedJson(Generic[M]):
    def __init__(self, path: Path, model: type[M]) -> None:
        self.path, self.model = path, model
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._value: M | None = None
        self.error: SchemaError | None = None  # why the file on disk is not in force

    def get(self) -> M | None:
        """The current value; None while the file does not exist."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every replace is a new inode
        with self._lock:
            if stamp != self._seen:
                self._seen = stamp
                self._read()
            if self._value is None and self.error is not None:
                raise self.error.with_traceback(None)
            return self._value

    def _read(self) -> None:
        try:
            self._value = parse(self.model, self.path.read_text(), str(self.path), SchemaError)
            self.error = None
        except SchemaError as exc:
            self.error = exc
            if self._value is not None:
                log.error("%s; the last valid one stays in force", exc.message)

    def forget(self) -> None:
        """Read the file again at the next `get` (its value stays the last valid one)."""
        with self._lock:
            self._seen = None
