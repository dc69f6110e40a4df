"""A model version's drift reference, read from its registry bundle.

`reference/features.json`: the training window's bin edges and range per
model input; `reference/serving.json`: what the serving path produced over
held-out requests, counted into those bins (`vidrec.training.serving_reference`).
The monitor compares serving windows with the second, bin for bin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidrec.errors import SchemaError
from vidrec.features.definitions import CATALOGUE_UNITS
from vidrec.monitoring.detector import Array
from vidrec.registry.bundle import read_manifest
from vidrec.registry.registry import Registry


@dataclass(frozen=True)
class Reference:
    version: str
    created_at: int  # when the model was trained (its staleness starts here)
    requests: int  # requests behind the counts
    features: dict[str, Array]  # counts per bin, bins as in the edges
    missing: dict[str, int]  # NaN values per feature
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

    def feature_samples(self, name: str, n: int) -> int:
        """`n` independent samples, capped for a catalogue feature at the distinct videos
        or creators its values came from (`CATALOGUE_UNITS`)."""
        unit = CATALOGUE_UNITS.get(name)
        return min(n, self.units[unit]) if unit in self.units else n

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
        )  # fmt: skip


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
