"""A trained registry (champion v1, challenger v2) and a materialised online store, once per
session: the serving tests start servers of either topology on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vidrec.config import FeatureConfig, Settings, load_settings
from vidrec.data.validate import open_dataset
from vidrec.features.definitions import FEATURES
from vidrec.features.materialize import load_history, materialize
from vidrec.features.pit import PointInTime, as_of_value
from vidrec.features.store import open_store
from vidrec.features.training_set import default_build_ts
from vidrec.training.run import run_training

CONFIG = """
[registry]
root = "{root}"
[train]
validation_days = 1
test_days = 1
retrieval_epochs = 1
ranker_rounds = 30
eval_requests = 50
reference_requests = 300
[gates]
baselines = []
min_gain_over_champion = -1.0
"""


@pytest.fixture(scope="session")
def served_models(small_sim: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("served")
    config = CONFIG.format(root=tmp / "registry")
    (tmp / "cfg.toml").write_text(config)
    settings: Settings = load_settings(tmp / "cfg.toml")
    for i in (1, 2):  # v1 becomes champion, v2 challenger
        run_training(settings, small_sim, run_dir=tmp / f"run{i}")
    store = f"sqlite:///{tmp / 'online.db'}"
    fcfg = FeatureConfig(online_store=store)
    ds = open_dataset(small_sim, fcfg)
    snap = as_of_value(fcfg.refresh_seconds, default_build_ts(ds))
    pit = PointInTime(ds.con, FEATURES, fcfg.last_n)
    st = open_store(store)
    materialize(pit, st, snap)
    load_history(ds.con, st, pit, snap)
    st.close()
    return {"tmp": tmp, "config": config, "store": store, "ts": snap}
