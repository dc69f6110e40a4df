"""A model bundle: one directory per model version, described by its manifest.

The manifest records what a model was trained on (data snapshot, windows,
feature set and schema hash, code version) so that any registered version can
be traced back to its inputs and refused by a server whose schema differs.
This module only describes and checks bundles; it never trains or loads models.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from vidrec.config import Strict, parse
from vidrec.data.compact import replaced_names
from vidrec.errors import InvalidInput, SchemaError

MANIFEST = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


class Manifest(Strict):
    # a NaN metric is written as NaN, not null, so the manifest still reads back
    model_config = ConfigDict(ser_json_inf_nan="constants")

    format: int = FORMAT
    model_name: str
    feature_set: str
    schema_hash: str
    training_window: tuple[int, int]  # [start, end) epoch seconds
    validation_window: tuple[int, int]
    data_snapshot_id: str
    git_sha: str
    created_at: int  # epoch seconds
    metrics: dict[str, float]
    gates: list[dict[str, Any]] = Field(default_factory=list)
    files: list[str]  # bundle-relative POSIX paths of every file except manifest.json

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: int) -> int:
        if v != FORMAT:
            raise ValueError(f"manifest format {v} is not supported (this vidrec reads {FORMAT})")
        return v

    @field_validator("files")
    @classmethod
    def _relative_files(cls, v: list[str]) -> list[str]:
        for f in v:
            p = PurePosixPath(f)
            if p.is_absolute() or ".." in p.parts or str(p) in ("", ".", MANIFEST):
                raise ValueError(f"{f!r} is not a bundle-relative file path")
        return v

    @model_validator(mode="after")
    def _ordered_windows(self) -> Manifest:
        (ts, te), (vs, ve) = self.training_window, self.validation_window
        if not (ts < te and vs < ve):
            raise ValueError("windows must be [start, end) with start < end")
        if te > vs:
            raise ValueError(f"training_window ends at {te}, after validation starts at {vs}")
        return self


def bundle_files(bundle: Path) -> list[str]:
    """Every file in the bundle except the manifest, sorted: what `Manifest.files` lists."""
    return sorted(
        p.relative_to(bundle).as_posix()
        for p in bundle.rglob("*")
        if p.is_file() and p != bundle / MANIFEST
    )


def write_manifest(bundle: Path, m: Manifest) -> Path:
    path = bundle / MANIFEST
    path.write_text(m.model_dump_json(indent=2) + "\n")
    return path


def parse_manifest(text: str, where: str) -> Manifest:
    """A manifest from JSON text; errors name `where` and the offending key."""
    return parse(Manifest, text, where, SchemaError)


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest, after checking that every file it lists is present."""
    path = bundle / MANIFEST
    if not path.is_file():
        raise SchemaError(f"{path}: not found; is {bundle} a model bundle?", file=str(path))
    m = parse_manifest(path.read_text(), str(path))
    missing = [f for f in m.files if not (bundle / f).is_file()]
    if missing:
        raise SchemaError(
            f"{path}: lists {len(missing)} file(s) missing from the bundle: {', '.join(missing)}",
            file=str(path),
            missing=missing,
        )
    return m


def snapshot_id(data_dir: Path) -> str:
    """A content id of a dataset directory: same bytes, same id; any changed byte, another.

    Hashes every file's relative path, size and bytes in path order, so renames
    and moves change the id too. Hidden files (a copy ingest is writing) and parts
    a merged part replaces (its rows are in it; compaction deletes them later,
    maybe while this reads: `vidrec.data.compact`) are not the data, and not hashed.
    """
    if not data_dir.is_dir():
        raise InvalidInput(f"{data_dir}: not a directory", path=str(data_dir))
    found = [p.relative_to(data_dir) for p in data_dir.rglob("*") if p.is_file()]
    found = [p for p in found if not any(part.startswith(".") for part in p.parts)]
    replaced = {d: replaced_names(data_dir / d) for d in {p.parent for p in found}}
    files = (p.as_posix() for p in found if p.name not in replaced[p.parent])
    h = hashlib.sha256()
    for rel in sorted(files):
        path = data_dir / rel
        h.update(f"{rel}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def git_sha() -> str:
    """HEAD of the repository holding this package, "+dirty" with local changes.

    "unknown" when git or the repository is absent (e.g. an installed wheel).
    """
    here = Path(__file__).resolve().parent
    head = _git(here, "rev-parse", "HEAD")
    if head is None:
        return "unknown"
    status = _git(here, "status", "--porcelain")
    return head + ("+dirty" if status else "")


def _git(cwd: Path, *args: str) -> str | None:
    # GIT_OPTIONAL_LOCKS=0: `git status` must not rewrite the index of a tree others edit
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
