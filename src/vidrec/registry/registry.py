"""The registry interface serving and rollout depend on, and the factory that opens one.

Callers find models by alias ("champion", "challenger") or version number and
never by backend-specific URIs, so the backend (MLflow today) can change
without touching serving or rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vidrec.config import RegistryConfig
from vidrec.errors import InvalidInput
from vidrec.registry.bundle import Manifest
from vidrec.registry.gates import GateReport

ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class VersionInfo:
    version: int
    aliases: list[str]
    source: str  # where the backend keeps the bundle
    manifest: Manifest
    tags: dict[str, str] = field(default_factory=dict)
    created_at: int = 0  # epoch seconds of registration


class Registry(Protocol):
    def register(self, bundle: Path, report: GateReport, alias: str | None = None) -> VersionInfo:
        """A new version from a bundle whose gate report passed; GateFailed otherwise."""

    def set_alias(self, alias: str, version: int) -> None:
        """Point `alias` at `version`, moving it from whichever version had it."""

    def delete_alias(self, alias: str) -> None:
        """No version has `alias` afterwards (nothing happens if none had it)."""

    def get(self, ref: str) -> VersionInfo:
        """By alias or version number ("champion", "2"); NotFound (404) if none."""

    def download(self, ref: str, dest: Path) -> Path:
        """A local copy of the version's bundle under `dest`, manifest verified."""

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first."""

    def tag(self, version: int, key: str, value: str) -> None: ...


def check_alias(alias: str) -> str:
    if alias not in ALIASES:
        raise InvalidInput(
            f"alias {alias!r} is not one of {', '.join(ALIASES)}", alias=alias, allowed=ALIASES
        )
    return alias


def open_registry(cfg: RegistryConfig) -> Registry:
    # imported here: mlflow takes seconds to import and most commands never need it
    from vidrec.registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry(cfg)
