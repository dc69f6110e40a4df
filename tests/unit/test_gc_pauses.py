"""The serving process's collector: start-up objects frozen out of its way, pauses exported."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram

from vidrec.serving import gc_pauses


@pytest.fixture
def unfrozen() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_every_collection_is_timed_by_generation() -> None:
    r = CollectorRegistry()
    h = Histogram("pauses", "", ["generation"], buckets=(0.001, 1.0), registry=r)
    callback = gc_pauses.observe(h)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        gc.callbacks.remove(callback)
    for generation in ("0", "2"):
        assert r.get_sample_value("pauses_count", {"generation": generation}) == 1
    assert r.get_sample_value("pauses_count", {"generation": "1"}) is None
    assert r.get_sample_value("pauses_sum", {"generation": "2"}) > 0


def test_what_start_up_made_is_kept_out_of_later_collections(unfrozen: None) -> None:
    made = [[i] for i in range(1000)]  # tracked containers, as a loaded app holds
    gc_pauses.freeze()
    assert gc.get_freeze_count() >= len(made)
    collected = {id(x) for x in gc.get_objects()}  # every generation a collection walks
    assert all(gc.is_tracked(x) and id(x) not in collected for x in made)


def test_young_objects_wait_longer_for_a_collection(unfrozen: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc_pauses.freeze()
    assert gc.get_threshold() == (gc_pauses.YOUNG_THRESHOLD, 10, 10)
    gc.collect(0)
    made = [[i] for i in range(1000)]  # net allocations past CPython's 700 ...
    assert gc.get_count()[0] >= len(made)  # ... and no young collection ran
