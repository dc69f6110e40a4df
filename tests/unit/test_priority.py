"""Shadow work on a SCHED_IDLE thread: the thread's own policy, not the process's, and only
for batches that are all shadow (a served call never waits on an idle-priority thread)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from vidrec.config import ServingConfig
from vidrec.serving.api import RecommendRequest
from vidrec.serving.priority import background, idle
from vidrec.serving.recommender import Call

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread policy")


def test_the_background_thread_is_idle_and_the_caller_is_not() -> None:
    assert not idle()
    pool = background(True)
    assert pool is not None
    assert pool.submit(idle).result(timeout=10)
    assert not idle()
    assert background(False) is None
    pool.shutdown()


def _calls(*variants: str) -> list[Call]:
    return [Call(RecommendRequest(user_id=i), f"r{i}", 0, v) for i, v in enumerate(variants)]


def test_a_replica_runs_batches_of_shadow_calls_alone_on_its_idle_thread() -> None:
    from vidrec.serving.deployments import ModelVersion

    cls: Any = ModelVersion.func_or_class
    replica = cls("2", ServingConfig(shadow_idle=True))  # split (no local stages): no thread
    assert replica.shadow_thread is None
    replica.local, replica.shadow_thread = object(), background(True)
    replica._fused = lambda calls: [idle()] * len(calls)
    assert asyncio.run(replica.recommend(_calls("shadow", "shadow"))) == [True, True]
    assert asyncio.run(replica.recommend(_calls("shadow", "challenger"))) == [False, False]
    assert asyncio.run(replica.recommend(_calls("champion"))) == [False]
    replica.shadow_thread.shutdown()
