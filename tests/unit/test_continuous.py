"""The continuous traffic driver's own process: a driver that cannot start says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidrec.traffic.continuous import Continuous


def test_a_driver_that_cannot_load_its_users_fails_loudly(tmp_path: Path) -> None:
    traffic = Continuous("http://127.0.0.1:9", tmp_path / "no-sim", 10.0)
    with pytest.raises(RuntimeError, match="did not start sending"):
        traffic.start()
