"""Adaptive batching of calls to a version's app (pure asyncio; stand-in calls)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vidrec.serving.batcher import Batcher


class Calls:
    """A stand-in app: each call answers every item doubled after `delay_s`."""

    def __init__(self, delay_s: float = 0.05, error: Exception | None = None) -> None:
        self.delay_s, self.error = delay_s, error
        self.sent: list[list[int]] = []
        self.cancelled: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.uncancellable = False  # a lost call: cancel() is recorded but changes nothing

    def __call__(self, items: list[int]) -> Any:
        self.sent.append(items)
        task = asyncio.ensure_future(self._answer(items))
        calls = self

        class Response:
            def __await__(self) -> Any:
                return task.__await__()

            def cancel(self) -> None:
                calls.cancelled.append(items)
                if not calls.uncancellable:
                    task.cancel()

        return Response()

    async def _answer(self, items: list[int]) -> list[int]:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
            return [2 * i for i in items]
        finally:
            self.running -= 1


def test_at_low_load_every_item_leaves_alone_at_once() -> None:
    calls = Calls(delay_s=0.01)

    async def spaced() -> list[int]:
        b: Batcher[int, int] = Batcher(calls, max_batch=8, in_flight=1)
        out = []
        for i in range(5):
            out.append(await b.submit(i))
            await asyncio.sleep(0.02)  # the app is idle again before the next one
        return out

    assert asyncio.run(spaced()) == [0, 2, 4, 6, 8]
    assert calls.sent == [[0], [1], [2], [3], [4]]


def test_items_arriving_while_calls_are_out_share_the_next_call() -> None:
    calls = Calls(delay_s=0.05)

    async def burst() -> list[int]:
        b: Batcher[int, int] = Batcher(calls, max_batch=4, in_flight=2)
        return list(await asyncio.gather(*(b.submit(i) for i in range(11))))

    assert asyncio.run(burst()) == [2 * i for i in range(11)]  # each its own answer, in order
    # two calls out at once, then the waiting ones together, at most max_batch a call
    assert calls.sent == [[0], [1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    assert calls.most_running == 2


def test_a_withdrawn_item_is_never_sent_and_a_call_all_withdrawn_is_cancelled() -> None:
    calls = Calls(delay_s=0.2)

    async def withdraw() -> None:
        b: Batcher[int, int] = Batcher(calls, max_batch=4, in_flight=1)
        first, waiting = b.submit(0), b.submit(1)
        waiting.cancel()  # its caller gave up while the first call was out
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0.3)
        assert await b.submit(2) == 4  # the batcher goes on

    asyncio.run(withdraw())
    assert calls.sent == [[0], [2]]
    assert calls.cancelled == [[0]]


def test_a_failed_call_fails_each_of_its_items_and_the_next_call_goes() -> None:
    calls = Calls(delay_s=0.02, error=ConnectionError("replica died"))

    async def failing() -> None:
        b: Batcher[int, int] = Batcher(calls, max_batch=4, in_flight=1)
        got = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
        assert all(isinstance(g, ConnectionError) for g in got)
        calls.error = None
        assert await b.submit(5) == 10

    asyncio.run(failing())
    assert calls.sent == [[0], [1, 2], [5]]


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(Calls(), max_batch=0)


def test_a_call_that_never_answers_frees_its_slot_when_its_callers_give_up() -> None:
    calls = Calls(delay_s=3600)
    calls.uncancellable = True

    async def lost() -> None:
        b: Batcher[int, int] = Batcher(calls, max_batch=4, in_flight=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.submit(0), 0.05)  # the router's deadline
        calls.delay_s = 0.01
        assert await asyncio.wait_for(b.submit(1), 1.0) == 2  # sent: the slot was freed

    asyncio.run(lost())
    assert calls.sent == [[0], [1]] and calls.cancelled == [[0]]


def test_lingering_calls_leave_when_full_or_when_the_oldest_has_waited() -> None:
    calls = Calls(delay_s=0.01)

    async def lingering() -> tuple[list[int], list[int], float, float]:
        b: Batcher[int, int] = Batcher(calls, max_batch=3, in_flight=1, linger_s=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        full = await asyncio.gather(*(b.submit(i) for i in range(3)))  # full: goes at once
        t_full, t1 = loop.time() - t0, loop.time()
        first = b.submit(10)
        await asyncio.sleep(0.1)  # arrives while the first lingers: shares its call
        rest = await asyncio.gather(first, b.submit(11))
        return full, rest, t_full, loop.time() - t1

    full, rest, t_full, t_lingered = asyncio.run(lingering())
    assert full == [0, 2, 4] and rest == [20, 22]
    assert calls.sent == [[0, 1, 2], [10, 11]]
    assert t_full < 0.25  # full: it did not linger
    assert t_lingered >= 0.29  # the pair left when the first had waited its 0.3 s
