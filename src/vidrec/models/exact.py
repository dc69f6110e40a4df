"""Exact inner-product search over the same vectors: the yardstick for ANN recall."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import faiss

from vidrec.models.ann import Array, as_f32, as_ids, items


@dataclass
class ExactIndex:
    dim: int
    index: faiss.IndexIDMap2 = field(init=False)
    kind: str = "exact"

    def __post_init__(self) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: Array, vectors: Array) -> None:
        ids, x = items(ids, vectors, self.dim)
        self.remove(ids)  # replace, never duplicate
        self.index.add_with_ids(x, ids)

    def remove(self, ids: Array) -> int:
        return int(self.index.remove_ids(faiss.IDSelectorBatch(as_ids(ids))))

    def search(self, queries: Array, k: int) -> tuple[Array, Array]:
        scores, ids = self.index.search(as_f32(queries, self.dim), k)
        return ids, scores

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path / "index.faiss"))
        (path / "index.json").write_text(json.dumps({"kind": self.kind, "dim": self.dim}))

    @classmethod
    def load(cls, path: Path) -> ExactIndex:
        meta = json.loads((path / "index.json").read_text())
        out = cls(int(meta["dim"]))
        out.index = cast(faiss.IndexIDMap2, faiss.read_index(str(path / "index.faiss")))
        return out
