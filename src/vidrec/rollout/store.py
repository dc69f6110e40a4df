"""Where the rollout object lives: an interface, so local mode and the cluster share the
controller. Local mode keeps a JSON file (`file_store`); in a cluster it is the
ModelRollout object. Writers give the generation they read, so a CLI command and the
controller never silently overwrite each other (Conflict, 409: re-read and retry)."""

from __future__ import annotations

from typing import Protocol

from vidrec.rollout.state import Rollout


class RolloutStore(Protocol):
    def get(self) -> Rollout | None:
        """The current rollout, or None when none was ever started."""

    def put(self, rollout: Rollout, expected_generation: int | None) -> Rollout:
        """Store it as the next generation; Conflict if the stored one is not
        `expected_generation` (None: only when nothing is stored). Returns what was stored."""
