"""The feature set vidrec's ranker reads, declared once.

Sources are SQL over the four documented tables (`vidrec.data.schema`); no
source may read the simulator's oracle. Add a feature here and both the
training-set builder and the online service pick it up; the schema hash
changes, so a model trained on the old vector is refused by serving.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vidrec.features.spec import BatchFeature, Columns, Entity, FeatureSet, Source, Transform
from vidrec.features.transform import list_contains

Array = npt.NDArray[Any]

H, D = 3600, 86_400
CTR_PRIOR, CTR_STRENGTH = 0.05, 20.0  # Beta prior for smoothed CTRs: 20 pseudo-impressions
CODE_BUCKETS = 997

USER = Entity("user", ("user_id",))
VIDEO = Entity("video", ("video_id",))
CREATOR = Entity("creator", ("creator_id",))
USER_CATEGORY = Entity("user_category", ("user_id", "category"))

WATCHES = Source(
    "watches",
    "SELECT w.user_id, w.video_id, v.creator_id, v.category, w.start_ts, "
    "w.label_ts, w.watch_seconds FROM watches w JOIN videos v USING (video_id)",
    available_at="label_ts",
)
IMPRESSIONS = Source(
    "impressions",
    "SELECT i.user_id, i.video_id, v.creator_id, i.ts "
    "FROM impressions i JOIN videos v USING (video_id)",
    available_at="ts",
)
USERS = Source(
    "users", "SELECT user_id, country, age_bucket, signup_ts FROM users", available_at="signup_ts"
)
VIDEOS = Source(
    "videos",
    "SELECT video_id, category, creator_id, language, duration_s, upload_ts FROM videos",
    available_at="upload_ts",
)


def _attr(
    name: str, entity: Entity, source: Source, column: str, dtype: str, default: float | str | None
) -> BatchFeature:
    return BatchFeature(
        name,
        entity,
        source,
        "latest",
        column,
        None,
        dtype,
        default,
        description=f"{entity.name}'s {column} (known from {source.available_at})",
    )


def _count(name: str, entity: Entity, source: Source, window: int) -> BatchFeature:
    return BatchFeature(
        name,
        entity,
        source,
        "count",
        None,
        window,
        "int64",
        0,
        description=f"{source.name} per {entity.name} over {window // H}h",
    )


def _sum(name: str, entity: Entity, source: Source, column: str, window: int) -> BatchFeature:
    return BatchFeature(
        name,
        entity,
        source,
        "sum",
        column,
        window,
        "float64",
        0.0,
        description=f"sum of {column} per {entity.name} over {window // H}h",
    )


BATCH = (
    _attr("user_country", USER, USERS, "country", "str", "unknown"),
    _attr("user_age_bucket", USER, USERS, "age_bucket", "str", "unknown"),
    _attr("user_signup_ts", USER, USERS, "signup_ts", "float64", None),
    _attr("video_category", VIDEO, VIDEOS, "category", "str", "unknown"),
    _attr("video_creator_id", VIDEO, VIDEOS, "creator_id", "float64", None),
    _attr("video_language", VIDEO, VIDEOS, "language", "str", "unknown"),
    _attr("video_duration_s", VIDEO, VIDEOS, "duration_s", "float64", None),
    _attr("video_upload_ts", VIDEO, VIDEOS, "upload_ts", "float64", None),
    _count("user_watches_1d", USER, WATCHES, D),
    _count("user_watches_7d", USER, WATCHES, 7 * D),
    _count("user_watches_28d", USER, WATCHES, 28 * D),
    _sum("user_watch_seconds_7d", USER, WATCHES, "watch_seconds", 7 * D),
    _sum("user_watch_seconds_28d", USER, WATCHES, "watch_seconds", 28 * D),
    _count("user_impressions_7d", USER, IMPRESSIONS, 7 * D),
    _count("video_impressions_1d", VIDEO, IMPRESSIONS, D),
    _count("video_impressions_7d", VIDEO, IMPRESSIONS, 7 * D),
    _count("video_watches_1d", VIDEO, WATCHES, D),
    _count("video_watches_7d", VIDEO, WATCHES, 7 * D),
    _sum("video_watch_seconds_7d", VIDEO, WATCHES, "watch_seconds", 7 * D),
    _count("creator_impressions_28d", CREATOR, IMPRESSIONS, 28 * D),
    _count("creator_watches_28d", CREATOR, WATCHES, 28 * D),
    _count("user_category_watches_28d", USER_CATEGORY, WATCHES, 28 * D),
    _sum("user_category_watch_seconds_28d", USER_CATEGORY, WATCHES, "watch_seconds", 28 * D),
    BatchFeature(
        "user_last_watched",
        USER,
        WATCHES,
        "last_n",
        "video_id",
        None,
        "list",
        None,
        freshness="realtime",
        description="ids of the user's last N watches whose labels are available, "
        "oldest first, at the request time itself",
    ),
)


def smoothed_ctr(clicks: Array, impressions: Array) -> Array:
    return (clicks + CTR_PRIOR * CTR_STRENGTH) / (impressions + CTR_STRENGTH)


def code(values: Any) -> Array:
    """Stable integer code of a category (crc32 bucket); -1 when unknown or missing.

    Hashing, not a fitted vocabulary, so any log's categories work and a code
    never depends on which rows a job happened to see.
    """
    index, uniq = pd.factorize(np.asarray(values, dtype=object))  # missing -> index -1
    table = [-1 if v == "unknown" else zlib.crc32(str(v).encode()) % CODE_BUCKETS for v in uniq]
    return np.asarray([*table, -1], dtype=np.int64)[index]


def _in_last_watched(d: Columns) -> Array:
    return list_contains(d["user_last_watched"], d["video_id"])


def _t(
    name: str,
    inputs: tuple[str, ...],
    fn: Callable[[Columns], Array],
    kind: str,
    dtype: str = "float64",
    description: str = "",
) -> Transform:
    return Transform(name, inputs, fn, kind, dtype, description)  # type: ignore[arg-type]


# Transforms read numpy columns (`Columns`), offline and online alike: numpy, not pandas
# (np.maximum, not Series.clip).
TRANSFORMS = (
    _t(
        "video_ctr_1d",
        ("video_watches_1d", "video_impressions_1d"),
        lambda d: smoothed_ctr(d["video_watches_1d"], d["video_impressions_1d"]),
        "batch",
    ),
    _t(
        "video_ctr_7d",
        ("video_watches_7d", "video_impressions_7d"),
        lambda d: smoothed_ctr(d["video_watches_7d"], d["video_impressions_7d"]),
        "batch",
    ),
    _t(
        "creator_ctr_28d",
        ("creator_watches_28d", "creator_impressions_28d"),
        lambda d: smoothed_ctr(d["creator_watches_28d"], d["creator_impressions_28d"]),
        "batch",
    ),
    _t(
        "user_ctr_7d",
        ("user_watches_7d", "user_impressions_7d"),
        lambda d: smoothed_ctr(d["user_watches_7d"], d["user_impressions_7d"]),
        "batch",
    ),
    _t(
        "video_watch_share_7d",
        ("video_watch_seconds_7d", "video_watches_7d", "video_duration_s"),
        lambda d: (
            d["video_watch_seconds_7d"]
            / (np.maximum(d["video_watches_7d"], 1) * d["video_duration_s"])
        ),
        "batch",
    ),
    _t(
        "user_category_share_28d",
        ("user_category_watches_28d", "user_watches_28d"),
        lambda d: d["user_category_watches_28d"] / np.maximum(d["user_watches_28d"], 1),
        "batch",
    ),
    _t(
        "video_age_hours",
        ("ts", "video_upload_ts"),
        lambda d: (d["ts"] - d["video_upload_ts"]) / H,
        "request",
    ),
    _t(
        "user_tenure_days",
        ("ts", "user_signup_ts"),
        lambda d: (d["ts"] - d["user_signup_ts"]) / D,
        "request",
    ),
    _t("hour_of_day", ("ts",), lambda d: (d["ts"] % D) // H, "request", "int64"),
    _t("device_code", ("device",), lambda d: code(d["device"]), "request", "int64"),
    _t("country_code", ("user_country",), lambda d: code(d["user_country"]), "batch", "int64"),
    _t("age_code", ("user_age_bucket",), lambda d: code(d["user_age_bucket"]), "batch", "int64"),
    _t(
        "category_code",
        ("video_category",),
        lambda d: code(d["video_category"]),
        "batch",
        "int64",
    ),
    _t(
        "language_code",
        ("video_language",),
        lambda d: code(d["video_language"]),
        "batch",
        "int64",
    ),
    _t(
        "in_last_watched",
        ("video_id", "user_last_watched"),
        _in_last_watched,
        "request",
        "int64",
        "1 if the candidate is among the user's last N watched videos",
    ),
)

MODEL_INPUTS = (
    "user_watches_1d",
    "user_watches_7d",
    "user_watches_28d",
    "user_watch_seconds_7d",
    "user_watch_seconds_28d",
    "user_ctr_7d",
    "video_impressions_1d",
    "video_impressions_7d",
    "video_ctr_1d",
    "video_ctr_7d",
    "video_watch_share_7d",
    "video_duration_s",
    "creator_ctr_28d",
    "user_category_watches_28d",
    "user_category_share_28d",
    "video_age_hours",
    "user_tenure_days",
    "hour_of_day",
    "session_position",
    "device_code",
    "country_code",
    "age_code",
    "category_code",
    "language_code",
    "in_last_watched",
)

# integer codes of categories (`code`): binned one category per bin for the drift monitor,
# so an unseen category (a new market) shows as itself, not as its numeric neighbour
CATEGORICAL_INPUTS = ("device_code", "country_code", "age_code", "category_code", "language_code")

# model inputs that describe the candidate, not the user: every user's candidates draw on
# the same catalogue, so such a histogram holds no more independent values than there are
# distinct videos (or creators) behind it; the drift test caps its sample size there
CATALOGUE_UNITS = {
    **dict.fromkeys(
        ("video_impressions_1d", "video_impressions_7d", "video_ctr_1d", "video_ctr_7d",
         "video_watch_share_7d", "video_duration_s", "video_age_hours", "category_code",
         "language_code"),
        "video",
    ),
    "creator_ctr_28d": "creator",
}  # fmt: skip

# model inputs that belong to the request (its user and context), the same for every
# candidate: logged once per request for the drift monitor's sample-based mode
REQUEST_INPUTS = (
    "user_watches_1d",
    "user_watches_7d",
    "user_watches_28d",
    "user_watch_seconds_7d",
    "user_watch_seconds_28d",
    "user_ctr_7d",
    "user_tenure_days",
    "hour_of_day",
    "session_position",
    "device_code",
    "country_code",
    "age_code",
)
REQUEST_INPUT_COLUMNS = [MODEL_INPUTS.index(n) for n in REQUEST_INPUTS]


def one_per_user(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A random request of each user in `frame` (seeded): a user's requests share their
    REQUEST_INPUTS, so the drift reference and the monitor's window both count each user
    once, picked the same way."""
    return frame.sample(frac=1.0, random_state=seed).drop_duplicates("user_id")


FEATURES = FeatureSet(
    name="ranking_v1",
    batch=BATCH,
    transforms=TRANSFORMS,
    request_columns={
        "ts": "int64",
        "user_id": "int64",
        "video_id": "int64",
        "device": "str",
        "session_position": "int64",
    },
    model_inputs=MODEL_INPUTS,
    derived_keys={
        "creator_id": ("video", "video_creator_id"),
        "category": ("video", "video_category"),
    },
)


def as_float_matrix(frame: Columns | pd.DataFrame, fs: FeatureSet = FEATURES) -> Array:
    """The model-input matrix, columns in `fs.model_inputs` order (a frame or its columns)."""
    return np.column_stack([np.asarray(frame[n], dtype=np.float64) for n in fs.model_inputs])
