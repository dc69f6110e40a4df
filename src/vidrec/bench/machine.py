"""What a benchmark ran on, recorded in every report: numbers mean nothing without it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any


def machine(*packages: str) -> dict[str, Any]:
    """CPU count, Python version and the versions of `packages` the numbers depend on."""
    versions = {p: importlib.metadata.version(p) for p in packages}
    return {"cpus": os.cpu_count(), "python": platform.python_version(), **versions}
