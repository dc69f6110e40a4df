"""Calls to one version's app, sent together while the app is busy (adaptive batching).

A Ray Serve handle call costs CPU whatever it carries: measured here with a no-op
replica, ~2 ms in the replica and as much again in the caller, a third of the
model path's (and ~5 + 4 ms by reference, before calls went by value).
At most `in_flight` calls per version are outstanding; requests that arrive
meanwhile wait here and leave together in the next call (at most `max_batch`).
There is no timer: at low load every request leaves alone and at once, so
batching adds no latency; under load calls grow, and the CPU per request falls
exactly when the machine runs short of it (Clipper's and Triton's dynamic
batching, without their wait window). Shadow calls, which nobody waits for, take
one (`linger_s`): a call leaves when full or when its oldest item has waited that
long, so a shadow costs the machine a handle call per batch, not per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """`send(items)` returns an awaitable for one result per item (a Ray Serve
    DeploymentResponse, so also `cancel()`); `submit(item)` is one item's future."""

    def __init__(
        self,
        send: Callable[[list[T]], Any],
        max_batch: int = 16,
        in_flight: int = 1,
        observe: Callable[[int], None] = lambda size: None,  # each call's size (a metric)
        linger_s: float = 0.0,  # an item waits up to this for others to share its call
    ) -> None:
        if max_batch < 1 or in_flight < 1 or linger_s < 0:
            raise ValueError("max_batch and in_flight must be >= 1, linger_s >= 0")
        self.send, self.max_batch, self.in_flight = send, max_batch, in_flight
        self.observe, self.linger_s = observe, linger_s
        # each waiting item, its future and when it arrived (loop time)
        self.waiting: deque[tuple[T, asyncio.Future[R], float]] = deque()
        self.busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        """Cancel the future to withdraw the item: unsent, it is never sent; sent, the
        whole call is cancelled once every item in it is withdrawn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self.waiting.append((item, future, loop.time()))
        self._pump()
        return future

    def _ready(self) -> bool:
        """A call may leave: no lingering, a full batch waiting, or the oldest item's wait
        over (else a timer calls back when it is)."""
        if not self.linger_s or len(self.waiting) >= self.max_batch:
            return True
        loop = asyncio.get_running_loop()
        left = self.waiting[0][2] + self.linger_s - loop.time()
        if left <= 0:
            return True
        if self._timer is None:
            self._timer = loop.call_later(left, self._linger_over)
        return False

    def _linger_over(self) -> None:
        self._timer = None
        self._pump()

    def _pump(self) -> None:
        while self.busy < self.in_flight and self.waiting and self._ready():
            batch = self._take()
            if not batch:
                continue
            self.busy += 1
            self.observe(len(batch))
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while self.waiting and len(batch) < self.max_batch:
            item, future, _ = self.waiting.popleft()
            if not future.done():  # withdrawn while waiting (its caller gave up)
                batch.append((item, future))
        return batch

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        futures = [f for _, f in batch]
        try:
            results = await _unless_all_withdrawn(self.send([item for item, _ in batch]), futures)
            if results is None:
                return  # every caller gave up: the call is cancelled, its slot free again
            if len(results) != len(futures):
                raise RuntimeError(f"{len(results)} results for a batch of {len(futures)}")
            for f, r in zip(futures, results, strict=True):
                if not f.done():
                    f.set_result(r)
        except Exception as exc:  # one failed call fails each of its items
            for f in futures:
                if not f.done():
                    f.set_exception(exc)
        finally:
            self.busy -= 1
            self._pump()


async def _unless_all_withdrawn(response: Any, futures: list[asyncio.Future[Any]]) -> Any:
    """The call's results, or None once every item in it is withdrawn: then the call is
    cancelled (still queued in Ray, it would cost a replica the model path for nobody) and
    not awaited further, so a call that never answers holds its slot no longer than its
    callers wait (their deadline)."""
    gave_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def withdrawn(f: asyncio.Future[Any]) -> None:
        if f.cancelled() and all(g.cancelled() for g in futures) and not gave_up.done():
            gave_up.set_result(None)
            response.cancel()

    for f in futures:
        f.add_done_callback(withdrawn)
    answer = asyncio.ensure_future(response)
    await asyncio.wait({answer, gave_up}, return_when=asyncio.FIRST_COMPLETED)
    if answer.done():
        return answer.result()
    answer.add_done_callback(lambda a: a.cancelled() or a.exception())  # retrieved: no warning
    return None
