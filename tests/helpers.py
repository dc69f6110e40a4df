"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 60,
             interval_s: float = 0.2) -> T:  # fmt: skip
    """The first truthy answer of `probe`, polled until `timeout_s`; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not (answer := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in {timeout_s:g} s (last answer {answer!r})")
        time.sleep(interval_s)
    return answer


def impressions_with_clicks(sim: Path) -> pd.DataFrame:
    """The simulated impressions with a 0/1 `click` column joined from the watches."""
    imp = pd.read_parquet(sim / "impressions.parquet")
    w = pd.read_parquet(sim / "watches.parquet", columns=["request_id", "video_id"])
    clicked = imp.merge(w.assign(c=1), how="left", on=["request_id", "video_id"])["c"]
    return imp.assign(click=clicked.fillna(0).to_numpy(dtype=float))


def cells(row: str) -> list[str]:
    """A Markdown table row's cells, stripped."""
    return [c.strip() for c in row.strip().strip("|").split("|")]
