"""What training steps read: windows of the PIT training set and the video table.

Shared by the pipeline steps and the evaluation, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vidrec.config import FeatureConfig
from vidrec.data.validate import read_clean
from vidrec.features.definitions import FEATURES
from vidrec.models.two_tower import USER_COLUMNS

# the columns rankers and evaluation read: ids, labels, segments, model and tower inputs
COLUMNS = list(
    dict.fromkeys(
        [
            "request_id",
            "ts",
            "user_id",
            "video_id",
            "position",
            "device",
            "label_click",
            "user_country",
            "user_age_bucket",
            *FEATURES.model_inputs,
            *USER_COLUMNS,
        ]
    )
)


def read_window(
    training_set: str | Path, window: list[int], columns: list[str] | None = None, **eq: int
) -> pd.DataFrame:
    """Rows with ts in [start, end), sorted: the training set itself is an unordered set."""
    filters: list[tuple[str, str, Any]] = [("ts", ">=", window[0]), ("ts", "<", window[1])]
    filters += [(k, "=", v) for k, v in eq.items()]
    rows = pd.read_parquet(training_set, columns=columns, filters=filters)
    return rows.sort_values(["request_id", "position", "video_id"], kind="stable").reset_index(
        drop=True
    )


def read_videos(data: str | Path, cfg: FeatureConfig | None = None) -> pd.DataFrame:
    """The log's valid videos: rejected rows (duplicate ids, bad durations) are not
    catalogued, as they are not in the training set."""
    query = "SELECT * FROM videos ORDER BY video_id"
    return read_clean(Path(data), cfg or FeatureConfig(), "videos", query)
