"""The rollout object as a JSON file: atomic replace, generation-checked writes, and an
archive of finished rollouts (their history and reasons outlive the next rollout)."""

from __future__ import annotations

import threading
from pathlib import Path

from vidrec.config import parse
from vidrec.errors import Conflict, SchemaError
from vidrec.rollout.state import Rollout
from vidrec.serving.file_routes import write_atomic


class FileRolloutStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def get(self) -> Rollout | None:
        if not self.path.exists():
            return None
        return parse(Rollout, self.path.read_text(), str(self.path), SchemaError)

    def put(self, rollout: Rollout, expected_generation: int | None) -> Rollout:
        with self._lock:
            current = self.get()
            have = current.generation if current else None
            if have != expected_generation:
                raise Conflict(
                    f"{self.path} is at generation {have}, not {expected_generation}: re-read it",
                    current=have, expected=expected_generation,
                )  # fmt: skip
            if current is not None and current.spec.version != rollout.spec.version:
                self._archive(current)
            stored = rollout.model_copy(update={"generation": (have or 0) + 1})
            write_atomic(self.path, stored.model_dump_json(indent=2))
            return stored

    def archived(self) -> list[Rollout]:
        folder = self.path.parent / "archive"
        files = sorted(folder.glob("*.json")) if folder.exists() else []
        return [parse(Rollout, f.read_text(), str(f), SchemaError) for f in files]

    def _archive(self, old: Rollout) -> None:
        name = f"{int(old.status.started_at)}-v{old.spec.version}.json"
        write_atomic(self.path.parent / "archive" / name, old.model_dump_json(indent=2))
