"""Samples mode's pure parts: the request-log window, which features are tested on values,
missing values as -1, and the settings it needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidrec.config import MonitoringConfig
from vidrec.errors import SchemaError
from vidrec.features.definitions import REQUEST_INPUTS
from vidrec.monitoring.assess import Window, assess, with_missing
from vidrec.monitoring.detector import Array, Statistic
from vidrec.monitoring.reference import Reference
from vidrec.monitoring.request_log import read_inputs
from vidrec.serving.feedback import SCHEMAS

CFG = MonitoringConfig(min_requests=10, exclude_features=())


def _log(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    base = {"request_id": 1, "ts": 0, "request_key": "k", **dict.fromkeys(REQUEST_INPUTS, 0.0)}
    full = [{**base, **r} for r in rows]
    (tmp_path / "requests").mkdir()
    pq.write_table(pa.Table.from_pylist(full, schema=SCHEMAS["requests"]),
                   tmp_path / "requests" / "part-0.parquet")  # fmt: skip
    return tmp_path


def test_a_window_keeps_one_request_per_user_of_that_variant_and_time(tmp_path: Path) -> None:
    row = {"variant": "champion", "model_version": "1"}
    log = _log(tmp_path, [
        {**row, "served_at": 10.0, "user_id": 1, "user_watches_1d": 3.0},
        {**row, "served_at": 11.0, "user_id": 1, "user_watches_1d": 3.0},
        {**row, "served_at": 12.0, "user_id": 2, "user_watches_1d": 5.0},
        {**row, "served_at": 50.0, "user_id": 3},  # after the window
        {"variant": "challenger", "model_version": "2", "served_at": 12.0, "user_id": 4},
    ])  # fmt: skip
    got = read_inputs(log, "champion", "1", 0.0, 20.0)
    assert got.requests == 3 and len(got.users) == 2
    assert sorted(got.column("user_watches_1d").tolist()) == [3.0, 5.0]
    assert np.all(np.diff(got.served_at) >= 0)
    assert read_inputs(tmp_path / "nothing", "champion", "1", 0, 20).requests == 0


def test_a_window_opens_no_part_written_before_it(tmp_path: Path) -> None:
    """The log keeps days of parts; a window is hours: the parts written before it (their
    names say when) hold no row of it, and are not opened."""
    row = {"variant": "champion", "model_version": "1", "user_id": 1}
    log = _log(tmp_path, [{**row, "served_at": 110.0}])
    (log / "requests" / "part-0.parquet").rename(
        log / "requests" / f"part-{111 * 10**9}-00001.parquet"
    )
    (log / "requests" / f"part-{99 * 10**9}-00000.parquet").write_bytes(b"torn, and old")
    assert read_inputs(log, "champion", "1", 100.0, 200.0).requests == 1
    with pytest.raises(pa.ArrowInvalid):  # what was skipped, if the window reached it
        read_inputs(log, "champion", "1", 90.0, 200.0)
    assert read_inputs(log, "champion", "1", 120.0, 200.0).requests == 0  # nothing since


def test_a_log_without_the_columns_is_refused_naming_the_folder(tmp_path: Path) -> None:
    (tmp_path / "requests").mkdir()
    pq.write_table(pa.table({"served_at": [1.0]}), tmp_path / "requests" / "p.parquet")
    with pytest.raises(SchemaError, match="requests"):
        read_inputs(tmp_path, "champion", "1", 0, 20)


class Recorder:
    """Fake detector: p = 0 for every feature, and remembers what it was given."""

    name = "fake"

    def __init__(self) -> None:
        self.seen: list[tuple[Array, Array]] = []

    def test(self, reference: Sequence[Array], current: Sequence[Array]) -> list[Statistic]:
        self.seen.extend(zip(reference, current, strict=True))
        return [Statistic(0.0, 1.0) for _ in reference]


def test_features_with_logged_values_go_to_the_sample_detector_the_rest_to_bins() -> None:
    ref = Reference(
        "1",
        0,
        100,
        {"a": np.array([50, 50]), "b": np.array([50, 50])},
        {},
        {},
        np.array([50, 50]),
        inputs=np.array([[1.0], [np.nan]]),
        input_names=("a",),
    )
    window = Window(100, {"a": np.array([50, 50]), "b": np.array([50, 50])},
                    score=np.array([50, 50]), seconds=60,
                    samples={"a": np.array([2.0, np.nan, 3.0])})  # fmt: skip
    binned, values = Recorder(), Recorder()
    a = assess(ref, window, CFG, binned, values)
    assert a.on_values == ("a",) and sorted(a.drifting) == ["a", "b"]
    (ref_a, cur_a), = values.seen  # fmt: skip
    assert ref_a.tolist() == [1.0, -1.0] and cur_a.tolist() == [2.0, -1.0, 3.0]
    assert len(binned.seen) == 2  # b and the scores
    # without a sample detector, or without samples, everything is binned
    assert assess(ref, window, CFG, Recorder()).on_values == ()


def test_missing_is_minus_one_and_samples_mode_needs_the_log() -> None:
    assert with_missing(np.array([0.5, np.nan])).tolist() == [0.5, -1.0]
    with pytest.raises(ValueError, match="request_log"):
        MonitoringConfig(mode="samples")
