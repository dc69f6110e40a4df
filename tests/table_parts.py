"""A table directory's parts as the compaction tests read them: names, and what a merged
part's footer says it replaces."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from vidrec.data.schema import REPLACES_KEY


def names(table: Path, glob: str = "*.parquet") -> list[str]:
    return sorted(p.name for p in table.glob(glob))


def footer(part: Path) -> list[str]:
    return json.loads(pq.read_schema(part).metadata[REPLACES_KEY])
