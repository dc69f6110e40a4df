"""The two-tower model: cold items embed from content alone; the index takes them without
retraining; the encoding is the same whatever the row order."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest

from vidrec.errors import InvalidInput
from vidrec.models.exact import ExactIndex
from vidrec.models.faiss_ivf import IvfIndex
from vidrec.models.two_tower import (
    USER_NUMERIC,
    Encoder,
    TowerConfig,
    Towers,
    TwoTower,
    hash_bucket,
)

CFG = TowerConfig(dim=16, hidden=32, id_buckets=1 << 10, creator_buckets=64)


def catalog(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "video_id": np.arange(n, dtype=np.int64) * 7 + 3,
            "video_category": rng.choice(["music", "news", "sport"], n),
            "video_creator_id": rng.integers(0, 20, n).astype(np.float64),
            "video_language": rng.choice(["en", "es"], n),
            "video_duration_s": rng.uniform(30, 900, n),
        }
    )


def towers(known: np.ndarray, cat: pd.DataFrame) -> Towers:
    import torch

    torch.manual_seed(0)
    net = TwoTower(CFG)
    with torch.no_grad():  # make id vectors large so "known" visibly changes an embedding
        net.item_id.weight.normal_(0, 1.0)
    return Towers(net, Encoder(CFG, np.sort(known), cat))


def test_a_video_nobody_clicked_is_embedded_from_its_content_alone() -> None:
    cat = catalog(50)
    t = towers(cat.video_id.to_numpy()[:25], cat)
    twin = cat.iloc[[0]].assign(video_id=10_001)  # same content, never-seen id
    known_emb = t.embed_items(cat.iloc[[0]])
    cold_emb = t.embed_items(cat.iloc[[0]], force_cold=True)
    assert not np.allclose(known_emb, cold_emb, atol=1e-3)  # the id vector matters when known
    # a new id with the same content gets exactly the content-only embedding
    np.testing.assert_allclose(t.embed_items(twin), cold_emb, atol=1e-6)
    # and unknown catalogue items (index >= 25) are content-only too
    rest = cat.iloc[25:]
    np.testing.assert_allclose(t.embed_items(rest), t.embed_items(rest, force_cold=True))


def test_embeddings_do_not_depend_on_row_order() -> None:
    cat = catalog(40)
    t = towers(cat.video_id.to_numpy()[::2], cat)
    shuffled = cat.sample(frac=1.0, random_state=1)
    a = pd.DataFrame(t.embed_items(cat), index=cat.video_id)
    b = pd.DataFrame(t.embed_items(shuffled), index=shuffled.video_id).loc[cat.video_id]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-6)
    assert np.allclose(np.linalg.norm(a.to_numpy(), axis=1), 1.0, atol=1e-5)


def test_hash_buckets_are_stable_and_in_range() -> None:
    ids = np.arange(100_000, dtype=np.int64)
    b = hash_bucket(ids, 1024)
    assert b.min() >= 0 and b.max() < 1024
    assert np.array_equal(b, hash_bucket(ids.copy(), 1024))
    assert len(np.unique(b[:1024])) > 600  # neighbouring ids spread out


def test_save_and_load_give_the_same_embeddings(tmp_path) -> None:
    cat = catalog(30)
    t = towers(cat.video_id.to_numpy()[:10], cat)
    t.save(tmp_path)
    back = Towers.load(tmp_path)
    np.testing.assert_allclose(back.embed_items(cat), t.embed_items(cat), atol=1e-6)


@pytest.mark.parametrize("kind", ["ivf", "exact"])
def test_index_adds_new_items_without_retraining(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = IvfIndex.train(x[:3000], seed=0) if kind == "ivf" else ExactIndex(16)
    index.add(np.arange(3000), x[:3000])
    trained = getattr(index, "index", None)
    centroids = trained.quantizer.reconstruct_n(0, trained.nlist) if kind == "ivf" else None
    index.add(np.arange(3000, 4000), x[3000:])  # new uploads
    assert len(index) == 4000
    ids, _ = index.search(x[3000:3100], 1)
    assert (ids[:, 0] == np.arange(3000, 3100)).all()  # each finds itself
    if centroids is not None:  # adding did not retrain the coarse quantizer
        np.testing.assert_array_equal(centroids, trained.quantizer.reconstruct_n(0, trained.nlist))
    index.add(np.array([5]), x[[7]])  # replace, never duplicate
    assert len(index) == 4000
    assert index.remove(np.array([5, 99_999])) == 1 and len(index) == 3999
    with pytest.raises(InvalidInput, match=r"duplicate ids in one add: \[9\]"):
        index.add(np.array([9, 9]), x[:2])
    with pytest.raises(InvalidInput, match="dimension 8, index has 16"):
        index.add(np.array([1]), x[:1, :8])


def test_ivf_scans_enough_lists_for_a_large_k() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 16)).astype(np.float32)
    index = IvfIndex.train(x, seed=0)
    index.add(np.arange(5000), x)
    assert index.probes(1) == index.nprobe  # small k: the configured nprobe
    assert index.probes(500) > index.nprobe  # top-500 of 5k needs most of the lists
    exact = ExactIndex(16)
    exact.add(np.arange(5000), x)
    b, _ = exact.search(x[:20], 500)

    def overlap(a: np.ndarray) -> float:
        return float(np.mean([len(set(r) & set(s)) / 500 for r, s in zip(a, b, strict=True)]))

    fixed = faiss.SearchParametersIVF()
    fixed.nprobe = index.nprobe
    _, unscaled = index.index.search(x[:20], 500, params=fixed)
    scaled = overlap(index.search(x[:20], 500)[0])
    # isotropic Gaussian data is IVF's worst case; real embeddings cluster
    assert scaled > 0.85 and scaled > overlap(unscaled) + 0.2


def test_the_serving_user_tower_equals_embed_users() -> None:
    cat = catalog(60)
    t = towers(cat.video_id.to_numpy()[:30], cat)
    rng = np.random.default_rng(3)
    n = 8
    hist = [list(rng.choice(cat.video_id.to_numpy(), rng.integers(0, 6))) for _ in range(n)]
    users = {
        "user_last_watched": [*hist[:-1], [999_999]],  # the last: a video not in the catalogue
        "country_code": [-1, *rng.integers(0, 50, n - 1)],  # -1: unknown
        "age_code": rng.integers(0, 5, n),
        "device_code": rng.integers(0, 3, n),
        "hour_of_day": rng.integers(0, 24, n),
        **{c: rng.uniform(0, 20, n) for c in USER_NUMERIC},
    }
    np.testing.assert_allclose(t.serving_user_tower()(users), t.embed_users(users), atol=1e-6)
