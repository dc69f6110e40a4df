"""Shadow work on a niced thread: the thread's own nice value, not the process's, and only
for batches that are all shadow (a served call never waits on a low-priority thread)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from vidrec.config import ServingConfig
from vidrec.serving.api import RecommendRequest
from vidrec.serving.priority import background, thread_nice
from vidrec.serving.recommender import Call

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def test_the_background_thread_is_niced_and_the_caller_is_not() -> None:
    before = thread_nice()
    pool = background(5)
    assert pool is not None
    assert pool.submit(thread_nice).result(timeout=10) == min(19, before + 5)
    assert thread_nice() == before
    assert background(0) is None
    pool.shutdown()


def _calls(*variants: str) -> list[Call]:
    return [Call(RecommendRequest(user_id=i), f"r{i}", 0, v) for i, v in enumerate(variants)]


def test_a_replica_runs_batches_of_shadow_calls_alone_on_its_niced_thread() -> None:
    from vidrec.serving.deployments import ModelVersion

    cls: Any = ModelVersion.func_or_class
    replica = cls("2", ServingConfig(shadow_nice=5))  # split (no local stages): no thread
    assert replica.shadow_thread is None
    replica.local, replica.shadow_thread = object(), background(5)
    replica._fused = lambda calls: [thread_nice()] * len(calls)
    here = thread_nice()
    assert asyncio.run(replica.recommend(_calls("shadow", "shadow"))) == [min(19, here + 5)] * 2
    assert asyncio.run(replica.recommend(_calls("shadow", "challenger"))) == [here, here]
    assert asyncio.run(replica.recommend(_calls("champion"))) == [here]
