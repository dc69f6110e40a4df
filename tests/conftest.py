"""Shared fixtures: one small simulated platform per test session (seeded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidrec.config import FeatureConfig, sim_config
from vidrec.data.simulate import simulate


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 days of the small platform: ~100k impressions, built in about a second."""
    out = tmp_path_factory.mktemp("sim") / "small"
    simulate(sim_config("small", {"days": 7}), "none", 11, out)
    return out


@pytest.fixture
def feature_cfg() -> FeatureConfig:
    return FeatureConfig()
