"""The serving process and Python's cyclic garbage collector.

A collection stops every thread of the process, the event loop that answers
requests included, for as long as it walks the tracked objects of the
generations it collects. After loading, the process holds some 600k of them
(Ray, KServe, FastAPI, the model bundles), and a full collection over them
took 0.35-0.6 s on 2 cores: past the model path's deadline, so each one
degraded a burst of responses. `freeze` moves what start-up made out of the
collector's way and makes young collections rarer; `observe` exports every
pause, so a tail latency that lines up with one shows on a dashboard.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram

# Tracked objects allocated, net of those freed, between young collections (CPython: 700).
# At 100 req/s with every request shadowed, objects of calls in flight (tens of ms; a
# lingering shadow batch, 0.1 s) outlived a few young collections at 700 and were promoted
# to the oldest generation, whose full collections (1-5 per 15 s, 60-150 ms each) stopped
# the server. At 20,000 a request's objects are freed by reference counting before any
# collection sees them: no full collection in the same runs (`vidrec bench serve`).
YOUNG_THRESHOLD = 20_000


def freeze() -> None:
    """Collect start-up's garbage once, then keep what is left out of later collections
    (start-up objects live as long as the process; what they free later is still freed
    by reference counting, only their cycles would stay), and collect the young
    generation only after YOUNG_THRESHOLD net allocations."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)


def observe(pauses: Histogram) -> Callable[[str, dict[str, Any]], None]:
    """Time every collection into `pauses` (labelled by generation). Safe as a callback:
    the collector never runs inside its own callbacks, so the histogram's lock is never
    taken twice by one thread."""
    began = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.labels(str(info["generation"])).observe(time.perf_counter() - began[0])

    gc.callbacks.append(callback)
    return callback  # to remove from gc.callbacks
