"""How a feature is declared: once, for both the offline builder and online serving.

A declaration says what entity it describes, which source table it reads, how
it aggregates over which window, and - crucially for leakage - which column
says when a fact becomes *available*. Offline (`pit.py`) and online
(`online.py`) both compile these declarations; neither has a private list of
features, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Agg = Literal["count", "sum", "latest", "last_n"]
Freshness = Literal["snapshot", "realtime"]
# A feature frame as plain columns, name -> numpy array (Arrow list<int64> for id lists):
# what transforms read, and what serving uses without paying for a DataFrame.
Columns = Mapping[str, Any]


@dataclass(frozen=True)
class Entity:
    """What a feature describes; `keys` are column names shared by facts and rows."""

    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """A fact table. `available_at` is when a row becomes known to the system.

    For watches that is `label_ts` (the watch has ended and been ingested), not
    `start_ts`: using the event time instead of the availability time is the
    classic leak the guard exists for.
    """

    name: str
    sql: str  # a SELECT over the dataset's views, exposing entity keys and columns
    available_at: str


@dataclass(frozen=True)
class BatchFeature:
    """An aggregate of a source's facts, per entity, over a trailing window.

    Window semantics: facts with time in [as_of - window, as_of), strictly before
    as_of. `snapshot` features are read at the last refresh before the request
    (as_of = floor(ts, refresh)); `realtime` ones at the request time itself.
    """

    name: str
    entity: Entity
    source: Source
    agg: Agg
    column: str | None = None  # summed/latest column; None for count
    window_s: int | None = None  # None: all history
    dtype: str = "float64"
    default: float | str | None = 0.0
    time_column: str | None = None  # join time; defaults to source.available_at
    freshness: Freshness = "snapshot"
    description: str = ""

    @property
    def join_time(self) -> str:
        return self.time_column or self.source.available_at

    @property
    def group(self) -> tuple[str, str, str, str]:
        """Features sharing a group are computed from one cumulative table."""
        kind = "attr" if self.agg == "latest" else "hist" if self.agg == "last_n" else "agg"
        return (self.entity.name, self.source.name, self.join_time, f"{kind}:{self.freshness}")


@dataclass(frozen=True)
class Transform:
    """A feature computed from other columns by a pure function.

    `kind` documents whether it depends only on batch values (`batch`, e.g. a
    smoothed CTR) or also on the request (`request`, e.g. hour of day). Online
    and offline call the same `fn` on the same assembled columns (numpy arrays, see
    `Columns`); it returns one value per row.
    """

    name: str
    inputs: tuple[str, ...]
    fn: Callable[[Columns], Any]
    kind: Literal["batch", "request"]
    dtype: str = "float64"
    description: str = ""


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned collection of declarations; the unit a model depends on."""

    name: str
    batch: tuple[BatchFeature, ...]
    transforms: tuple[Transform, ...]
    request_columns: dict[str, str]  # raw columns every request carries -> dtype
    model_inputs: tuple[str, ...]  # the numeric vector a model reads, in order
    derived_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    # derived_keys: key column -> (entity name, attribute feature) it is read from,
    # e.g. creator_id comes from the video's `video_creator_id` attribute.

    def __post_init__(self) -> None:
        names = self.feature_names()
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"feature names declared twice: {sorted(dup)}")
        known = set(names) | set(self.request_columns)
        for t in self.transforms:
            missing = [i for i in t.inputs if i not in known]
            if missing:
                raise ValueError(f"transform {t.name!r} reads undeclared columns {missing}")
        absent = [m for m in self.model_inputs if m not in known]
        if absent:
            raise ValueError(f"model inputs not declared as features: {absent}")

    def feature_names(self) -> list[str]:
        """Every declared feature: batch features, then transforms, in declaration order."""
        return [f.name for f in self.batch] + [t.name for t in self.transforms]

    def subset(self, entities: set[str]) -> FeatureSet:
        """The features of `entities` alone, with every transform they can feed (the same
        declarations and functions, fewer of them): what a stage that needs only the user's
        features computes, without reading every other entity's rows."""
        batch = tuple(f for f in self.batch if f.entity.name in entities)
        known = {f.name for f in batch} | set(self.request_columns)
        transforms = []
        for t in self.transforms:  # in declaration order: a transform may read an earlier one
            if set(t.inputs) <= known:
                transforms.append(t)
                known.add(t.name)
        return FeatureSet(
            self.name,
            batch,
            tuple(transforms),
            self.request_columns,
            tuple(m for m in self.model_inputs if m in known),
            {k: v for k, v in self.derived_keys.items() if v[0] in entities},
        )

    def groups(self) -> dict[tuple[str, str, str, str], list[BatchFeature]]:
        out: dict[tuple[str, str, str, str], list[BatchFeature]] = {}
        for f in self.batch:
            out.setdefault(f.group, []).append(f)
        return out

    def entities(self) -> dict[str, Entity]:
        return {f.entity.name: f.entity for f in self.batch}

    def by_name(self, name: str) -> BatchFeature | Transform:
        table: dict[str, BatchFeature | Transform] = {f.name: f for f in self.batch}
        table.update((t.name, t) for t in self.transforms)
        if name not in table:
            raise KeyError(name)
        return table[name]

    def schema(self) -> list[dict[str, str]]:
        return [
            {"name": n, "dtype": self.request_columns.get(n) or self.by_name(n).dtype}
            for n in self.model_inputs
        ]

    def schema_hash(self) -> str:
        """Identifies the model-input vector; training and serving must agree on it."""
        blob = json.dumps({"set": self.name, "inputs": self.schema()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
