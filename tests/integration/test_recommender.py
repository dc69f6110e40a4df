"""The in-process recommender on a trained bundle and a materialised online store: the path
every Ray Serve replica runs. Rules hold on real output; failures degrade to popularity."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vidrec.config import FeatureConfig, RegistryConfig, Settings, TrainConfig
from vidrec.data.validate import open_dataset
from vidrec.errors import NotReady
from vidrec.features.definitions import FEATURES
from vidrec.features.materialize import load_history, materialize
from vidrec.features.online import OnlineFeatures
from vidrec.features.pit import PointInTime, as_of_value
from vidrec.features.store import open_store
from vidrec.features.training_set import default_build_ts
from vidrec.serving.api import Context, RecommendRequest
from vidrec.serving.model import ServingModel
from vidrec.serving.recommender import Recommender
from vidrec.training.run import run_training

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(small_sim: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("serve")
    train = TrainConfig(
        validation_days=1, test_days=1, retrieval_epochs=1, ranker_rounds=30, eval_requests=50
    )
    settings = Settings(train=train, registry=RegistryConfig(root=tmp / "registry"))
    summary = run_training(settings, small_sim, run_dir=tmp / "run")
    cfg = FeatureConfig(online_store=f"sqlite:///{tmp / 'online.db'}")
    ds = open_dataset(small_sim, cfg)
    snap = as_of_value(cfg.refresh_seconds, default_build_ts(ds))
    pit = PointInTime(ds.con, FEATURES, cfg.last_n)
    store = open_store(cfg.online_store)
    materialize(pit, store, snap)
    load_history(ds.con, store, pit, snap)
    model = ServingModel.load(Path(summary["bundle"]), "test")
    rec = Recommender(model, OnlineFeatures(store, FEATURES, cfg.last_n))
    return rec, snap, Path(summary["bundle"]), small_sim


def ask(rec: Recommender, user: int, ts: int, k: int = 10) -> Any:
    return rec.recommend(RecommendRequest(user_id=user, k=k, context=Context(ts=ts)))


def test_a_known_user_gets_a_ranked_slate_that_obeys_the_rules(served: Any) -> None:
    rec, ts, _, sim = served
    import pandas as pd

    watches = pd.read_parquet(sim / "watches.parquet")
    user = int(watches[watches.label_ts < ts].user_id.value_counts().index[0])  # most active
    r = ask(rec, user, ts)
    assert not r.degraded and r.model_version == rec.model.version and len(r.items) == 10
    ids = [i.video_id for i in r.items]
    assert len(set(ids)) == 10
    recent = rec.features.store.history(user, ts, rec.features.last_n)
    assert recent and not set(recent) & set(ids)  # already watched never comes back
    creators = Counter(int(rec.model.items.creator_id[v]) for v in ids)
    assert max(creators.values()) <= rec.cfg.max_per_creator
    explore = [i for i in r.items if i.source == "explore"]
    assert len(explore) == 1 and 0 < explore[0].propensity < 1
    ranked = [i.score for i in r.items if i.source == "ranked"]
    assert ranked == sorted(ranked, reverse=True)
    assert set(r.timings_s) == {"retrieval", "features", "ranking"}


def test_an_unknown_user_is_served_not_refused(served: Any) -> None:
    rec, ts, _, _ = served
    r = ask(rec, 10**9, ts, k=5)
    assert len(r.items) == 5 and not r.degraded


def test_a_large_k_retrieves_enough_candidates(served: Any) -> None:
    rec, ts, _, _ = served
    r = ask(rec, 3, ts, k=300)
    # 600 videos from 30 creators: the creator cap, not retrieval, is what bounds the slate
    creators = rec.model.items.creator_id.nunique()
    assert len(r.items) == rec.cfg.max_per_creator * creators < 300


def test_exploration_draws_are_a_function_of_the_request_id(served: Any) -> None:
    rec, ts, _, _ = served

    def explored(rid: str) -> tuple[int, int]:
        r = rec.recommend(RecommendRequest(user_id=3, k=10, request_id=rid, context=Context(ts=ts)))
        return next((i.video_id, n) for n, i in enumerate(r.items) if i.source == "explore")

    # a replayed request gets the same slate (reproducible), and across requests the draws
    # still vary in both the fresh video and its slot (a fixed seed per process would not
    # make the first true; one seed for every request would break the second)
    assert explored("replayed") == explored("replayed")
    draws = [explored(f"r{i}") for i in range(40)]
    assert len({v for v, _ in draws}) > 1 and len({n for _, n in draws}) > 1


def test_a_broken_model_path_degrades_to_popularity(served: Any) -> None:
    rec, ts, _, _ = served

    class DownIndex:
        def __len__(self) -> int:
            return 600

        def search(self, *_: Any) -> Any:
            raise ConnectionError("index shard unreachable")

    model = dataclasses.replace(rec.model, index=DownIndex())
    broken = Recommender(model, rec.features)
    r = broken.recommend(
        RecommendRequest(user_id=3, k=8, context=Context(ts=ts, country="US", age_bucket="25-34"))
    )
    assert r.degraded and r.reason == "ConnectionError" and len(r.items) == 8
    assert all(i.source == "fallback" for i in r.items)
    assert [i.video_id for i in r.items] == rec.model.popular("US", "25-34")[:8]


def test_a_bundle_for_another_feature_schema_is_refused(served: Any, tmp_path: Path) -> None:
    _, _, bundle, _ = served
    other = tmp_path / "bundle"
    shutil.copytree(bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["schema_hash"] = "0123456789abcdef"
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(NotReady, match="0123456789abcdef") as exc:
        ServingModel.load(other, "9")
    assert exc.value.http_status == 503


def test_a_request_gets_the_same_candidates_and_scores_alone_or_in_a_batch(served: Any) -> None:
    import numpy as np

    rec, ts, _, _ = served
    stages = rec.stages
    # different users, times, devices and k (so candidate counts differ too)
    asked = [
        (
            RecommendRequest(user_id=u, k=k, context=Context(ts=ts - lag, device=d)),
            f"r{u}",
            ts - lag,
        )
        for u, k, lag, d in [(3, 10, 0, "ios"), (10**12, 5, 60, "web"), (17, 150, 3600, "android")]
    ]
    got = stages.retrieve_many(asked)
    ranked = stages.rank_many(asked, got)
    for (req, rid, t), g, r in zip(asked, got, ranked, strict=True):
        alone = stages.retrieve(req, rid, t)
        assert (alone.ids, alone.fresh, alone.watched) == (g.ids, g.fresh, g.watched)
        one = stages.rank(req, rid, t, alone)
        assert np.array_equal(one.ids, r.ids) and np.allclose(one.scores, r.scores)
        assert [c.video_id for c in one.fresh] == [c.video_id for c in r.fresh]
        assert one.bins == r.bins
        assert np.array_equal(one.inputs, r.inputs, equal_nan=True)  # NaN: missing
    assert len(got[2].ids) > len(got[0].ids)  # k=150 asks for 300 candidates, k=10 for 200


def test_ranking_takes_the_user_columns_retrieval_read(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request reads its user once: ranking reuses what retrieval read (both stages see
    one snapshot row and one history) and scores exactly as if it had read them itself."""
    import numpy as np

    rec, ts, _, _ = served
    stages = rec.stages
    asked = [(RecommendRequest(user_id=u, k=10, context=Context(ts=ts - lag)), f"u{u}", ts - lag)
             for u, lag in [(3, 0), (10**12, 60), (17, 3600)]]  # fmt: skip
    got = stages.retrieve_many(asked)
    assert all(set(g.user) == set(stages.user_names) for g in got)
    store, reads = stages.features.store, Counter[str]()
    read, history = store.read, store.history

    def counted_read(entity: str, keys: Any) -> Any:
        reads[entity] += 1
        return read(entity, keys)

    def counted_history(*args: Any) -> Any:
        reads["history"] += 1
        return history(*args)

    monkeypatch.setattr(store, "read", counted_read)
    monkeypatch.setattr(store, "history", counted_history)
    reused = stages.rank_many(asked, got)
    assert reads["user"] == reads["history"] == 0, reads  # the user: not read again
    assert reads["user_category"] == 1, reads  # what only ranking needs still is
    reads.clear()
    again = stages.rank_many(asked, [dataclasses.replace(g, user={}) for g in got])
    assert reads["user"] == 1 and reads["history"] == 3, reads  # ranking reading them itself
    for a, b in zip(reused, again, strict=True):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.scores, b.scores)
        assert a.bins == b.bins and np.array_equal(a.inputs, b.inputs, equal_nan=True)
