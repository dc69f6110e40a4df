"""Simulated users in back-to-back rounds until stopped, from a process of their own.

For runs of unknown length such as a rollout (`make demo`, the rollout tests). The
driver is open loop: a pause in its process holds back requests that then leave at
once, a burst the server queues. In the process of its caller it paused whenever
that process did: the demo's and pytest's hold 1.2M objects after training and a
dozen test modules, and a full garbage collection there took 0.6-1.0 s, then the
burst put 13-20 % of a canary's requests over its 0.1 s SLO and rolled back a good
model. Here it only shares the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from vidrec.traffic.replay import Replay, users_seen
from vidrec.traffic.users import SimulatedUsers

START_TIMEOUT_S = 120  # a spawned child imports numpy, pandas and aiohttp, then loads users


class Continuous:
    """Rounds of `round_s` at `rate` while `on` is set; remembers, per round, the requests
    that failed and which users each model version answered."""

    def __init__(self, url: str, sim: Path, rate: float, round_s: float = 3.0,
                 seed: int = 0) -> None:  # fmt: skip
        ctx = mp.get_context("spawn")  # no fork of a process holding Ray's or pytest's threads
        self.on, self._stopped, self._ready = ctx.Event(), ctx.Event(), ctx.Event()
        self._results: Any = ctx.Queue()
        self._child = ctx.Process(
            target=_drive, name="vidrec-traffic", daemon=True,
            args=(url, sim, rate, round_s, seed, self.on, self._stopped, self._ready,
                  self._results),
        )  # fmt: skip
        self.rounds: list[dict[str, Any]] = []
        self.seen_in: list[dict[str, set[Any]]] = []  # per round: version -> users answered
        self._collector = threading.Thread(target=self._collect, name="traffic-results",
                                           daemon=True)  # fmt: skip

    def start(self) -> Continuous:
        """Returns once the child has loaded its users and sends."""
        self.on.set()
        self._child.start()
        self._collector.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(0.2):
            if self._child.exitcode is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the traffic process did not start sending (exit code "
                                   f"{self._child.exitcode}; its error is above)")  # fmt: skip
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._child.join(timeout=60)
        if self._child.is_alive():
            self._child.kill()
        self._results.put(None)  # the collector's end, after every round the child sent
        self._collector.join(timeout=10)

    def failed(self) -> int:
        """Requests that got no 2xx answer, over every round so far."""
        self._check()
        return _failed(self.rounds)

    def mark(self) -> int:
        """A point to measure from (`since`): rounds finished so far."""
        return len(self.rounds)

    def since(self, mark: int) -> dict[str, Any]:
        """Requests, failed requests and the users each model version answered in the rounds
        after `mark` (a user counts once per version, however often it came back)."""
        self._check()
        rounds, seen = self.rounds[mark:], self.seen_in[mark:]
        by_version: dict[str, set[Any]] = {}
        for r in seen:
            for v, u in r.items():
                by_version.setdefault(v, set()).update(u)
        return {
            "requests": sum(r["planned"] for r in rounds),
            "failed": _failed(rounds),
            **users_seen(by_version),
        }

    def _check(self) -> None:
        """A driver that died would look like a quiet, error-free service: say so instead."""
        code = self._child.exitcode
        if code is not None and not self._stopped.is_set():
            raise RuntimeError(f"the traffic process exited with code {code}")

    def _collect(self) -> None:
        while (item := self._results.get()) is not None:
            out, seen = item
            self.seen_in.append(seen)
            self.rounds.append(out)


def _failed(rounds: list[dict[str, Any]]) -> int:
    """Requests that got no 2xx answer in these rounds."""
    return sum(r["planned"] - r["ok"] for r in rounds)


def _drive(
    url: str, sim: Path, rate: float, round_s: float, seed: int,
    on: Event, stopped: Event, ready: Event, results: Any,
) -> None:  # fmt: skip
    """The child: one `Replay` round after another while `on`, each round's summary and
    users sent back as it ends."""
    users = SimulatedUsers.load(sim)
    ready.set()
    n = 0
    while not stopped.is_set():
        if not on.wait(0.2):
            continue
        n += 1
        r = Replay(url, users, seed=seed * 100_003 + n)
        out = asyncio.run(r.run(rate, round_s))
        results.put((out, r.seen))
