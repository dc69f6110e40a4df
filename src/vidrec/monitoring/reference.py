"""A model version's drift reference, read from its registry bundle.

`reference/features.json`: the training window's bin edges and range per
model input; `reference/serving.json`: what the serving path produced over
held-out requests, counted into those bins (`vidrec.training.serving_reference`).
The monitor compares serving windows with the second, bin for bin, and with the
blocks of it served nearest the window's hours of day (`vidrec.features.hours`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vidrec.errors import SchemaError
from vidrec.features.definitions import CATALOGUE_UNITS
from vidrec.features.hours import HOURS, nearest_block
from vidrec.monitoring.detector import Array
from vidrec.registry.bundle import read_manifest
from vidrec.registry.registry import Registry


@dataclass(frozen=True)
class Blocks:
    """The reference counted per block: its requests served as of each block's end."""

    hours: list[int]  # each block's end, hour of day
    requests: Array  # per block
    samples: Array  # distinct users per block
    features: dict[str, Array]  # (block, bin) counts
    missing: dict[str, Array]  # per block
    score: Array  # (block, bin)
    input_blocks: Array  # block of each row of Reference.inputs

    def weights(self, hours: Array) -> Array | None:
        """Each block's share of a window served at `hours` (requests per hour of day):
        every hour goes to the nearest block holding requests. None: nothing to weigh."""
        held = [i for i, n in enumerate(self.samples) if n > 0]
        hours = np.asarray(hours, dtype=np.float64)
        if not held or len(hours) != HOURS or hours.sum() <= 0:
            return None
        w = np.zeros(len(self.hours))
        for h in np.flatnonzero(hours):
            w[held[nearest_block(int(h), [self.hours[i] for i in held])]] += hours[h]
        return w / w.sum()


@dataclass(frozen=True)
class Reference:
    version: str
    created_at: int  # when the model was trained (its staleness starts here)
    requests: int  # requests behind the counts
    features: dict[str, Array]  # counts per bin, bins as in the edges
    missing: dict[str, float]  # NaN values per feature
    edges: dict[str, list[float]]
    score: Array  # top-k scores per SCORE_EDGES bin
    # distinct users behind the counts, the effective sample size (0: unknown, as in bundles
    # from before it was measured; every request then counts as one)
    samples: int = 0
    requests_per_user: dict[int, float] = field(default_factory=dict)  # by window length (s)
    # one request per distinct user: its own inputs (samples mode), columns named below
    inputs: Array = field(default_factory=lambda: np.zeros((0, 0)))
    input_names: tuple[str, ...] = ()
    # distinct videos and creators among the candidates (empty in older bundles: no cap)
    units: dict[str, int] = field(default_factory=dict)
    categorical: frozenset[str] = frozenset()  # features binned one category per bin
    blocks: Blocks | None = None  # None: one block (bundles from before it was counted)
    hours: tuple[int, ...] = ()  # hours of day of the blocks behind the counts (): unknown

    def feature_samples(self, name: str, n: int) -> int:
        """`n` independent samples, capped for a catalogue feature at the distinct videos
        or creators its values came from (`CATALOGUE_UNITS`)."""
        unit = CATALOGUE_UNITS.get(name)
        return min(n, self.units[unit]) if unit in self.units else n

    def at_hours(self, hours: Array | None) -> Reference:
        """The reference of a window served at `hours` (requests per hour of day): the
        blocks' histograms mixed in the window's shares, sized by the mixture's effective
        sample size 1 / sum(w_b^2 / n_b), and the inputs of the blocks it draws on. Itself
        without blocks or hours."""
        w = None if self.blocks is None or hours is None else self.blocks.weights(hours)
        if w is None:
            return self
        b = self.blocks
        assert b is not None
        used = w > 0
        n_eff = 1.0 / float(np.sum(w[used] ** 2 / b.samples[used]))

        def mix(counts: Array) -> Array:  # (block, bin) -> the window's shares, n_eff in all
            totals = counts.sum(axis=1, keepdims=True)
            shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
            return n_eff * (w @ shares)

        features, missing = {}, {}
        for n, counts in b.features.items():
            mixed = mix(np.column_stack([counts, b.missing[n]]))
            features[n], missing[n] = mixed[:-1], float(mixed[-1])
        picked = np.flatnonzero(used)
        rows = np.isin(b.input_blocks, picked)
        return replace(self, requests=int(b.requests[used].sum()), features=features,
                       missing=missing, score=mix(b.score), samples=max(1, round(n_eff)),
                       inputs=self.inputs[rows] if len(b.input_blocks) else self.inputs,
                       blocks=None, hours=tuple(b.hours[i] for i in picked))  # fmt: skip

    def at_data_end(self) -> Reference:
        """The block served as of the data's end: what the online store holds when the
        version ships (itself without blocks)."""
        if self.blocks is None:
            return self
        hours = np.zeros(HOURS)
        hours[self.blocks.hours[0]] = 1
        return self.at_hours(hours)

    def input(self, name: str) -> Array:
        return self.inputs[:, self.input_names.index(name)]

    def effective_samples(self, requests: float, window_s: float) -> float:
        """A serving window's requests as independent samples: divided by the requests per
        user the log shows for windows that long (interpolated in log length; 1 when the
        reference has no measurement)."""
        if not self.requests_per_user:
            return requests
        lengths = sorted(self.requests_per_user)
        ratio = float(np.interp(np.log(max(window_s, 1.0)), np.log(lengths),
                                [self.requests_per_user[w] for w in lengths]))  # fmt: skip
        return requests / max(ratio, 1.0)

    @classmethod
    def load(cls, bundle: Path, version: str, created_at: int | None = None) -> Reference:
        """From a bundle (`created_at` from its manifest unless given: a bare reference
        directory has no manifest)."""
        path = bundle / "reference" / "serving.json"
        if not path.exists():
            raise SchemaError(
                f"{path}: the bundle has no serving reference (trained before drift monitoring?)",
                path=str(path),
            )
        serving: dict[str, Any] = json.loads(path.read_text())
        edges: dict[str, Any] = json.loads((bundle / "reference" / "features.json").read_text())[
            "features"
        ]
        return cls(
            version=version,
            created_at=read_manifest(bundle).created_at if created_at is None else created_at,
            requests=int(serving["requests"]),
            features={n: np.asarray(f["counts"]) for n, f in serving["features"].items()},
            missing={n: int(f["missing"]) for n, f in serving["features"].items()},
            edges={n: list(e["edges"]) for n, e in edges.items()},
            score=np.asarray(serving["score"]["counts"]),
            samples=int(serving.get("samples", 0)),
            requests_per_user={int(w): float(r)
                               for w, r in serving.get("requests_per_user", {}).items()},
            **_inputs(serving.get("request_inputs")),
            units={u: int(n) for u, n in serving.get("units", {}).items()},
            categorical=frozenset(n for n, e in edges.items() if e.get("kind") == "categorical"),
            blocks=_blocks(serving),
            hours=tuple(serving.get("blocks", {}).get("hours", ())),
        )  # fmt: skip


def _blocks(serving: dict[str, Any]) -> Blocks | None:
    b = serving.get("blocks")
    if not b:  # bundles from before the reference was served at several times of day
        return None
    inputs = serving.get("request_inputs") or {}
    return Blocks(
        hours=[int(h) for h in b["hours"]],
        requests=np.asarray(b["requests"], dtype=np.float64),
        samples=np.asarray(b["samples"], dtype=np.float64),
        features={n: np.asarray(f["counts"], dtype=np.float64) for n, f in b["features"].items()},
        missing={n: np.asarray(f["missing"], dtype=np.float64) for n, f in b["features"].items()},
        score=np.asarray(b["score"], dtype=np.float64),
        input_blocks=np.asarray(inputs.get("blocks", []), dtype=np.int64),
    )


def _inputs(block: dict[str, Any] | None) -> dict[str, Any]:
    if not block:  # bundles from before samples mode: it has nothing to compare with
        return {}
    names = tuple(block["names"])
    values = np.asarray(block["values"], dtype=np.float64).reshape(-1, len(names))
    return {"inputs": values, "input_names": names}


class References:
    """Version -> Reference, downloading each bundle once from the registry."""

    def __init__(self, registry: Registry, cache: Path) -> None:
        self.registry, self.cache = registry, cache
        self._refs: dict[str, Reference] = {}

    def get(self, version: str) -> Reference:
        if version not in self._refs:
            bundle = self.registry.download(version, self.cache)
            self._refs[version] = Reference.load(bundle, version)
        return self._refs[version]
