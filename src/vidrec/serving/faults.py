"""Fault injection for the model path: delay or crash a stage's replicas, per version.

Off unless `vidrec serve --faults FILE` names a file; then the Retrieval and
Ranking replicas read it (re-read when replaced) before each call. This is how
the tests and the rollout demo prove that a slow ranker or a crashed replica
degrades to the fallback instead of failing requests, and how a deliberately
slow or bad (randomly ranking) challenger is made. A crash happens once per file change: the replica
that takes it leaves a marker so its restarted successor carries on serving.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vidrec.config import Setting
from vidrec.serving.recommender import Ranked, request_rng
from vidrec.serving.watched import WatchedJson

Stage = Literal["retrieval", "ranking"]
SHUFFLE_STREAM = 1  # `shuffled`'s draws, apart from the request's exploration draws


class Fault(Setting):
    stage: Stage
    version: str | None = Field(None, description="model version affected (None: every one)")
    delay_s: float = Field(0.0, ge=0, le=60, description="added before the stage runs")
    crash: bool = Field(False, description="the replica process exits (once per file change)")
    shuffle: bool = Field(
        False, description="ranking only: rank the candidates at random (a bad model)"
    )

    @model_validator(mode="after")
    def _shuffle_ranks(self) -> Fault:
        if self.shuffle and self.stage != "ranking":
            raise ValueError("shuffle applies to the ranking stage only")
        return self


class Faults(Setting):
    faults: list[Fault] = Field(default_factory=list)


class FaultFile:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file = WatchedJson(path, Faults) if path else None

    def apply(self, stage: Stage, version: str) -> None:
        """Sleep or exit as the file says for this stage and version; nothing without a file."""
        for f in self._matching(stage, version):
            if f.delay_s:
                time.sleep(f.delay_s)
            if f.crash and self._first_crash(stage, version):
                os._exit(17)  # a real process death, as an OOM kill would be

    def shuffles(self, version: str) -> bool:
        """Whether this version's ranking is to be replaced by a random order."""
        return any(f.shuffle for f in self._matching("ranking", version))

    def _matching(self, stage: Stage, version: str) -> list[Fault]:
        """The file's faults for this stage and version (none without a file)."""
        faults = self._file.get() if self._file else None
        if faults is None:
            return []
        return [f for f in faults.faults if f.stage == stage and f.version in (None, version)]

    def _first_crash(self, stage: str, version: str) -> bool:
        assert self.path is not None
        stamp = self.path.stat().st_mtime_ns
        marker = self.path.with_name(f"{self.path.name}.crashed.{stage}.{version}.{stamp}")
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return False
        return True


def shuffled(ranked: Ranked, rid: str) -> Ranked:
    """The same candidates in a random order, the scores left best first (so re-dealt to
    match): a bad model. The order is the request's own (`request_rng`)."""
    order = request_rng(rid, SHUFFLE_STREAM).permutation(len(ranked.ids))
    return replace(ranked, ids=ranked.ids[order], creators=ranked.creators[order])
