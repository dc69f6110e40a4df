"""The request and response of a recommendation, validated: a bad field is a 422 naming it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vidrec.config import Exact, Strict
from vidrec.data.schema import MAX_POSITION

MAX_K = MAX_POSITION + 1  # the positions of a served slate are ones training can read
INT64_MAX = 2**63 - 1  # ids and counts are int64 in the feature pipeline and the log
MAX_TS = 253_402_300_799  # 9999-12-31T23:59:59Z: beyond, time arithmetic overflows


class Context(Exact):
    country: str | None = Field(None, max_length=64, description="used when the user is unknown")
    age_bucket: str | None = Field(None, max_length=64)
    device: str | None = Field(None, max_length=64)
    ts: int | None = Field(
        None, ge=0, le=MAX_TS, description="request time, epoch s (default: now)"
    )
    session_position: int = Field(0, ge=0, le=INT64_MAX)


class RecommendRequest(Exact):
    user_id: int = Field(ge=0, le=INT64_MAX)
    k: int = Field(10, ge=1, le=MAX_K)
    context: Context = Context()
    request_id: str | None = Field(None, min_length=1, max_length=128)


class Item(Strict):
    video_id: int
    score: float
    source: Literal["ranked", "explore", "fallback"]
    propensity: float


class RecommendResponse(Strict):
    request_id: str
    ts: int = Field(description="request time used, epoch s")
    user_id: int
    variant: str
    model_version: str
    items: list[Item]
    degraded: bool = False
    reason: str | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
