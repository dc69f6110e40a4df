"""One registered model version loaded for serving: towers, index, ranker, fallback.

Loaded from a registry bundle; refused (NotReady, 503) when its feature schema
hash is not the one this code computes - a model trained on another feature
vector would score garbage without failing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from vidrec.errors import NotReady
from vidrec.features.bins import FeatureBins
from vidrec.features.definitions import FEATURES
from vidrec.models.exact import ExactIndex
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.ids import find_sorted
from vidrec.models.scorer import Scorer, load_scorer
from vidrec.models.two_tower import Towers
from vidrec.registry.bundle import Manifest, read_manifest

Array = npt.NDArray[Any]
FRESH_REFRESH_S = 60


def popular_in(lists: dict[str, list[int]], country: str | None, age: str | None) -> list[int]:
    """The (country, age) segment's list backfilled from the global one; unknown -> global."""
    seg = lists.get(f"{country}|{age}", []) if country and age else []
    return list(dict.fromkeys(seg + lists.get("*|*", [])))


@dataclass
class ServingModel:
    version: str
    manifest: Manifest
    towers: Towers
    index: IvfIndex
    items: pd.DataFrame  # indexed by video_id: creator_id, upload_ts
    embeddings: pd.DataFrame  # indexed by video_id: the item vectors in the index
    scorer: Scorer
    popularity: dict[str, list[int]]  # "country|age" (and "*|*") -> most clicked first
    bins: FeatureBins  # the training window's decile edges of every model input
    _fresh: dict[tuple[int, float], tuple[ExactIndex, pd.Index]] = field(
        default_factory=dict, init=False, repr=False
    )
    embed_users: Callable[[Any], npt.NDArray[np.float32]] = field(init=False, repr=False)
    _sorted_ids: npt.NDArray[np.int64] = field(init=False, repr=False)
    _columns: dict[str, npt.NDArray[np.float64]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """What every request uses, built before the first: the user tower with the
        catalogue's item vectors, and the item columns in id order (+ NaN for absent ids)."""
        self.embed_users = self.towers.serving_user_tower()
        ids = self.items.index.to_numpy(np.int64)
        order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[order]
        self._columns = {
            c: np.append(self.items[c].to_numpy(np.float64)[order], np.nan)
            for c in self.items.columns
        }

    @classmethod
    def load(cls, bundle: Path, version: str, fast_scorer: bool = True) -> ServingModel:
        manifest = read_manifest(bundle)
        if manifest.schema_hash != FEATURES.schema_hash():
            raise NotReady(
                f"model {version}: feature schema {manifest.schema_hash} is not this server's "
                f"{FEATURES.schema_hash()}; retrain it with the current feature definitions",
                version=version,
            )
        faiss.omp_set_num_threads(1)  # one query per call: threads only add contention
        torch.set_num_threads(1)  # likewise for the item tower, run once here
        threadpool_limits(1, "blas")  # and the user tower's matmuls (numpy's BLAS)
        idx = bundle / "retrieval" / "index"
        ids = np.load(idx / "item_ids.npy")
        return cls(
            version=version,
            manifest=manifest,
            towers=Towers.load(bundle / "retrieval"),
            index=IvfIndex.load(idx),
            items=pd.read_parquet(idx / "items.parquet").set_index("video_id"),
            embeddings=pd.DataFrame(np.load(idx / "item_embeddings.npy"), index=ids),
            scorer=load_scorer(bundle / "ranker" / "model.txt", fast=fast_scorer),
            popularity=cls.popularity_of(bundle),
            bins=FeatureBins.load(bundle / "reference" / "features.json", FEATURES.model_inputs),
        )

    @staticmethod
    def popularity_of(bundle: Path) -> dict[str, list[int]]:
        """The fallback lists alone: cheap enough for the router to hold every version's."""
        lists: dict[str, list[int]] = json.loads(
            (bundle / "fallback" / "popularity.json").read_text()
        )
        return lists

    def item_values(self, column: str, ids: Array) -> npt.NDArray[np.float64]:
        """`items[column]` of each id as floats, NaN for an id not in the catalogue (or -1):
        a binary search in sorted ids, cheaper than pandas' indexers at a few hundred ids."""
        pos, found = find_sorted(self._sorted_ids, ids)
        return self._columns[column][np.where(found, pos, len(self._sorted_ids))]

    def popular(self, country: str | None, age: str | None) -> list[int]:
        return popular_in(self.popularity, country, age)

    def fresh_index(self, now: int, fresh_s: float) -> tuple[ExactIndex, pd.Index]:
        """A small exact index over videos uploaded in the last `fresh_s` (exploration pool),
        built once a minute: as of the minute's start, so nothing from the future is in it."""
        key = (now // FRESH_REFRESH_S, fresh_s)
        found = self._fresh.get(key)
        if found is None:
            found = self._build_fresh(key[0] * FRESH_REFRESH_S, fresh_s)
            # one swap: a replica's shadow thread reads this beside its served calls
            self._fresh = {key: found}
        return found

    def _build_fresh(self, now: int, fresh_s: float) -> tuple[ExactIndex, pd.Index]:
        up = self.items.upload_ts.to_numpy()
        recent = self.items.index[(up >= now - fresh_s) & (up <= now)]
        index = ExactIndex(self.index.index.d)
        if len(recent):
            index.add(recent.to_numpy(), self.embeddings.loc[recent].to_numpy())
        return index, recent
