"""A deliberately leaky feature, kept for the guard's demo and tests. Never train on it.

`user_watch_seconds_1d_by_start` sums a user's watch time by the watch's
*start* time. A watch that started before the request but ends after it has no
label yet at request time, so reading its watch_seconds peeks at the future;
in the simulator that is often the user's previous click of the same session.
"""

from __future__ import annotations

from dataclasses import replace

from vidrec.features.definitions import FEATURES, USER, WATCHES
from vidrec.features.spec import BatchFeature, FeatureSet

LEAKY = BatchFeature(
    "user_watch_seconds_1d_by_start",
    USER,
    WATCHES,
    "sum",
    "watch_seconds",
    86_400,
    time_column="start_ts",
    description="LEAKY: joins on start_ts instead of label_ts",
)


def leaky_feature_set() -> FeatureSet:
    return replace(FEATURES, name="ranking_v1_leaky", batch=(*FEATURES.batch, LEAKY))
