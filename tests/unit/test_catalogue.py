"""grow_bundle: a bundle's index grown with synthetic videos, the rest of the bundle as it was.

The source bundle is built by the training pipeline's own `build_index` and
`register` steps (so its layout is the real one) from untrained towers and a
two-tree ranker: no training, about a second.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch

from vidrec.bench.catalogue import grow_bundle
from vidrec.config import RegistryConfig, Settings
from vidrec.errors import InvalidInput, SchemaError
from vidrec.features.definitions import FEATURES
from vidrec.models.two_tower import Encoder, TowerConfig, Towers, TwoTower, videos_as_features
from vidrec.registry.bundle import bundle_files, read_manifest, write_manifest
from vidrec.serving.model import ServingModel
from vidrec.training.steps import Context, build_index, register

REAL = 400
BUILD_TS = 1_700_000_000
CFG = TowerConfig(dim=16, hidden=32, id_buckets=1 << 10, creator_buckets=64)


def _videos(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "video_id": np.sort(rng.choice(50_000, n, replace=False)).astype(np.int64),
            "category": rng.choice(["music", "news", "sport", "tech"], n),
            "creator_id": rng.integers(0, 40, n).astype(np.int64),
            "language": rng.choice(["en", "es", "fr"], n),
            "duration_s": rng.uniform(30, 900, n).astype(np.float32),
            "upload_ts": BUILD_TS - rng.integers(0, 60 * 86400, n),
        }
    )


def _ranker(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURES.model_inputs)))
    y = (x[:, 0] > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "seed": 0}
    lgb.train(params, lgb.Dataset(x, y), num_boost_round=2).save_model(str(path))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    data = root / "data"
    data.mkdir()
    videos = _videos(REAL)
    videos.to_parquet(data / "videos.parquet", index=False)
    torch.manual_seed(0)
    catalog = videos_as_features(videos.iloc[: REAL // 2])  # what the towers "trained on"
    towers = Towers(TwoTower(CFG), Encoder(CFG, catalog.video_id.to_numpy()[::3], catalog))
    towers.save(root / "retrieval")

    ctx = Context(root / "run", Settings(registry=RegistryConfig(root=root / "registry")))
    index = build_index(ctx, str(data), str(root / "retrieval"), BUILD_TS)["index"]
    models = ctx.dir("train_ranker")
    _ranker(models / "lightgbm_ipw.txt")
    (models / "popularity.json").write_text(json.dumps({"*|*": [int(v) for v in videos.video_id]}))
    (models / "reference.json").write_text(
        json.dumps({"feature_set": FEATURES.name, "features": {}})
    )
    (models / "serving.json").write_text(json.dumps({"requests": 0, "features": {}}))
    build = {
        "schema_hash": FEATURES.schema_hash(),
        "windows": {"train": [0, 100], "validation": [200, 300]},
        "snapshot_id": "sha256:test",
    }
    # register assembles the bundle before it looks at the gates: a failed gate stops it
    # there, so no registry is opened
    failed = {"name": "fixture", "passed": False, "value": None, "threshold": None}
    out = register(
        ctx,
        build,
        str(root / "retrieval"),
        index,
        str(models / "lightgbm_ipw.txt"),
        {"lightgbm_ipw": {"ndcg": 0.5}},
        "lightgbm_ipw",
        {"gates": [{**failed, "message": "test bundle: never registered"}]},
        str(models / "serving.json"),
    )
    assert out["registered"] is False
    return Path(out["bundle"])


def _digest(d: Path) -> dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_grown_bundle_keeps_the_real_videos_and_adds_synthetic_ones(
    bundle: Path, tmp_path: Path
) -> None:
    before = _digest(bundle)
    src = bundle / "retrieval" / "index"
    real_ids = np.load(src / "item_ids.npy")
    real_emb = pd.DataFrame(np.load(src / "item_embeddings.npy"), index=real_ids)
    real_items = pd.read_parquet(src / "items.parquet")
    assert len(real_ids) == REAL  # every video uploaded by build time

    out = tmp_path / "grown"
    info = grow_bundle(bundle, out, items=3000, seed=1)
    assert (info["items"], info["real_items"], info["synthetic_items"]) == (3000, REAL, 2600)
    assert info["nlist"] >= 1 and info["seconds"] >= 0

    idx = out / "retrieval" / "index"
    ids = np.load(idx / "item_ids.npy")
    emb = np.load(idx / "item_embeddings.npy")
    assert ids.dtype == np.int64 and emb.dtype == np.float32 and emb.shape == (3000, 16)
    assert len(np.unique(ids)) == 3000
    grown = pd.DataFrame(emb, index=ids)
    np.testing.assert_array_equal(grown.loc[real_ids].to_numpy(), real_emb.to_numpy())
    synthetic = np.setdiff1d(ids, real_ids)
    assert len(synthetic) == 2600 and synthetic.min() > real_ids.max()
    assert synthetic.min() == info["first_synthetic_id"]

    items = pd.read_parquet(idx / "items.parquet")
    assert list(items.columns) == list(real_items.columns)
    assert (items.video_id.to_numpy() == ids).all()
    assert items.dtypes.equals(real_items.dtypes)
    new = items[items.video_id.isin(synthetic)]
    assert new.upload_ts.isin(real_items.upload_ts).all()
    assert new.creator_id.isin(real_items.creator_id).all()
    # content-only vectors with a continuous duration drawn apart: few exact twins
    assert len(np.unique(emb[len(real_ids) :], axis=0)) > 0.9 * 2600

    assert json.loads((idx / "grown.json").read_text())["synthetic_items"] == 2600
    assert "retrieval/index/grown.json" in read_manifest(out).files
    assert _digest(bundle) == before  # the source is untouched


def test_the_grown_bundle_serves_and_finds_synthetic_videos(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "grown"
    grow_bundle(bundle, out, items=2000, seed=0)
    model = ServingModel.load(out, "x", fast_scorer=False)  # the ranker compiles elsewhere
    assert len(model.index) == 2000 and len(model.items) == 2000
    real_max = int(np.load(bundle / "retrieval" / "index" / "item_ids.npy").max())
    queries = model.embeddings[model.embeddings.index > real_max].iloc[:50]
    found, _ = model.index.search(queries.to_numpy(), 10)
    assert all(v in row for v, row in zip(queries.index, found, strict=True))  # each finds itself
    assert (found[found >= 0] > real_max).mean() > 0.5  # 80% of the catalogue is synthetic


def test_same_seed_same_bundle_other_seed_other(bundle: Path, tmp_path: Path) -> None:
    def embeddings(name: str, seed: int) -> np.ndarray:
        grow_bundle(bundle, tmp_path / name, items=1000, seed=seed)
        return np.load(tmp_path / name / "retrieval" / "index" / "item_embeddings.npy")

    a, b, c = embeddings("a", 3), embeddings("b", 3), embeddings("c", 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_refuses_too_few_items_an_existing_output_and_an_old_bundle(
    bundle: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="fewer than the bundle's 400 real videos"):
        grow_bundle(bundle, tmp_path / "small", items=REAL - 1)
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidInput, match="already exists"):
        grow_bundle(bundle, tmp_path / "taken", items=REAL)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial left

    old = tmp_path / "old"  # a bundle from before the index kept items.parquet
    shutil.copytree(bundle, old)
    (old / "retrieval" / "index" / "items.parquet").unlink()
    write_manifest(old, read_manifest(bundle).model_copy(update={"files": bundle_files(old)}))
    with pytest.raises(SchemaError, match=r"predates items\.parquet"):
        grow_bundle(old, tmp_path / "from-old", items=REAL)
