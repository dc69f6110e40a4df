"""Where the live route table comes from: an interface, so the source can change.

Local mode keeps it in a JSON file (`file_routes.FileRouteSource`); in a
cluster it will be a Kubernetes object. Writers say which version they read
(`expected_version`), so two controllers never silently overwrite each other.
"""

from __future__ import annotations

from typing import Protocol

from vidrec.errors import VidrecError
from vidrec.serving.routing import RouteTable


class RouteSource(Protocol):
    def get(self) -> RouteTable:
        """The current table (cheap: serving calls it per request or per tick). Once one
        was read, a stored table that cannot be read leaves the last valid one in force."""

    @property
    def error(self) -> VidrecError | None:
        """Why the stored table is not the one in force, or None."""

    def set(self, table: RouteTable, expected_version: int | None = None) -> RouteTable:
        """Store `table` as the next version; Conflict (409) if the stored version is not
        `expected_version` (None: unconditional). Returns what was stored."""
