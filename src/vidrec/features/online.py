"""Online feature vectors: store lookups + the shared `finish` step.

Given request rows (one per candidate: ts, user_id, video_id, device,
session_position), it reads each entity's snapshot row, derives dependent keys
(creator, category) from the video's attributes exactly as the offline join
does, reads the realtime history, and hands the raw frame to
`transform.finish` - the same function the training set went through.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vidrec.features.spec import FeatureSet
from vidrec.features.store import OnlineStore
from vidrec.features.transform import finish


class OnlineFeatures:
    def __init__(self, store: OnlineStore, fs: FeatureSet, last_n: int) -> None:
        self.store, self.fs, self.last_n = store, fs, last_n
        providers = {entity for entity, _attr in fs.derived_keys.values()}
        entities = fs.entities()
        # entities that provide derived keys are read first
        self.order = sorted(entities.values(), key=lambda e: e.name not in providers)

    def frame(self, requests: pd.DataFrame) -> pd.DataFrame:
        raw = requests.reset_index(drop=True).copy()
        for entity in self.order:
            snap = [
                f
                for f in self.fs.batch
                if f.entity.name == entity.name and f.freshness == "snapshot"
            ]
            if snap:
                self._lookup(raw, entity.name, entity.keys, [f.name for f in snap])
            if any(e == entity.name for e, _ in self.fs.derived_keys.values()):
                self._derive_keys(raw, entity.name)
        for f in self.fs.batch:
            if f.freshness == "realtime":
                # one read per (user, time): a request's candidates share it
                pairs = list(zip(raw[f.entity.keys[0]], raw["ts"], strict=True))
                hist = {
                    p: self.store.history(int(p[0]), int(p[1]), self.last_n) for p in set(pairs)
                }
                raw[f.name] = [hist[p] for p in pairs]
        return finish(raw, self.fs)

    def _lookup(
        self, raw: pd.DataFrame, entity: str, keys: tuple[str, ...], names: list[str]
    ) -> None:
        tuples = list(zip(*(raw[k] for k in keys), strict=True))
        valid = [t for t in dict.fromkeys(tuples) if not any(_missing(v) for v in t)]
        found = dict(zip(valid, self.store.read(entity, [_key(t) for t in valid]), strict=True))
        rows = [found.get(t) or {} for t in tuples]
        for n in names:
            raw[n] = [r.get(n) for r in rows]

    def _derive_keys(self, raw: pd.DataFrame, entity: str) -> None:
        for key, (e, attr) in self.fs.derived_keys.items():
            if e != entity:
                continue
            is_str = self.fs.by_name(attr).dtype == "str"
            raw[key] = [None if _missing(v) else (str(v) if is_str else int(v)) for v in raw[attr]]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _key(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.item() if isinstance(v, np.generic) else v for v in t)
