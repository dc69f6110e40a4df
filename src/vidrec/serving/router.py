"""Champion / challenger routing in the server process, in front of the version apps.

Per request: read the live route table, assign the user's variant (sticky
buckets), call that version's app under the deadline (through its `Batcher`: requests
that arrive while the app is busy share a call), and degrade to the segment's
popularity list when the call fails or is late (the response says so and
why: never a 500). A fraction of requests is shadowed to the
challenger through a bounded set of slots: full means dropped and counted,
and the user's response never waits for it. Routing here rather than in a
Ray deployment saves a hop per request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vidrec.config import ServingConfig
from vidrec.errors import NotReady
from vidrec.serving.api import RecommendRequest
from vidrec.serving.batcher import Batcher
from vidrec.serving.model import ServingModel
from vidrec.serving.recommender import Call, Failed, Outcome, Served, fallback, response
from vidrec.serving.route_source import RouteSource
from vidrec.serving.routing import Variant, assign, shadowed
from vidrec.serving.shadow import Comparison, compare

MAX_UNDRAINED = 10_000
V = TypeVar("V")


@dataclass(frozen=True)
class ShadowResult:
    served: list[int]  # what the user was shown
    shadow: Served  # what the challenger would have shown (variant "shadow")
    comparison: Comparison | None  # None when the shadow call degraded


@dataclass
class ShadowReport:
    """Shadow outcomes since the last drain (`results`: those no `on_shadow` took)."""

    results: list[ShadowResult] = field(default_factory=list)
    dropped: int = 0  # no free slot (never sent), or results over MAX_UNDRAINED (never drained)
    failed: int = 0


class Router:
    def __init__(
        self,
        routes: RouteSource,
        bundles: dict[str, Path],
        cfg: ServingConfig,
        # each call's size, by version and kind ("served" or "shadow")
        observe_batch: Callable[[str, str, int], None] = lambda version, kind, size: None,
        on_shadow: Callable[[ShadowResult], None] | None = None,
    ) -> None:
        self.routes, self.cfg, self.observe_batch = routes, cfg, observe_batch
        # each shadow result as it completes (default: kept for `drain`)
        self.on_shadow = on_shadow or self._keep
        self.popular = {v: ServingModel.popularity_of(b) for v, b in bundles.items()}
        self.handles: dict[str, Any] = {}  # model version -> its app's handle, once up
        self.batchers: dict[str, Batcher[Call, Outcome]] = {}  # model version -> its calls
        self.shadow_batchers: dict[str, Batcher[Call, Outcome]] = {}  # its shadow calls
        self.shadow_slots = asyncio.Semaphore(cfg.shadow_queue)
        self.report = ShadowReport()
        self._tasks: set[asyncio.Task[None]] = set()
        self.unbooked: deque[tuple[list[int], Served]] = deque()  # shown, shadow

    def attach(self, handles: dict[str, Any]) -> None:
        self.batchers = {v: self._batcher(v, h) for v, h in handles.items()}
        self.shadow_batchers = {v: self._batcher(v, h, shadow=True) for v, h in handles.items()}
        self.handles = dict(handles)

    def add(self, version: str, bundle: Path, handle: Any) -> None:
        """A version loaded while serving (a new challenger): routable from now on."""
        self.popular[version] = ServingModel.popularity_of(bundle)
        self.batchers = {**self.batchers, version: self._batcher(version, handle)}
        shadow = self._batcher(version, handle, shadow=True)
        self.shadow_batchers = {**self.shadow_batchers, version: shadow}
        self.handles = {**self.handles, version: handle}  # one swap: readers see old or new

    def remove(self, version: str) -> None:
        """A version the route table stopped naming, before its app is deleted: no call is
        sent to it from now on (calls in flight finish; its popularity list stays, for them)."""
        self.handles = _without(self.handles, version)  # first
        self.batchers = _without(self.batchers, version)
        self.shadow_batchers = _without(self.shadow_batchers, version)

    def _batcher(self, version: str, handle: Any, shadow: bool = False) -> Batcher[Call, Outcome]:
        """Served calls leave at once; shadow calls, which nobody waits for, in batches of
        their own that linger (fewer handle calls: the CPU the champion would lose)."""
        return Batcher(
            handle.recommend.remote,
            self.cfg.max_batch,
            # per replica: each runs one call at a time
            self.cfg.calls_in_flight * self.cfg.replicas,
            lambda size: self.observe_batch(version, "shadow" if shadow else "served", size),
            min(self.cfg.shadow_linger_s, self.cfg.deadline_s / 2) if shadow else 0.0,
        )

    async def recommend(self, req: RecommendRequest) -> Served:
        table = self.routes.get()
        variant: Variant = assign(table, req.user_id)
        if variant == "challenger" and table.challenger not in self.handles:
            variant = "champion"  # still loading: its users wait on the champion, unharmed
        version = table.challenger if variant == "challenger" else table.champion
        assert version is not None
        if version not in self.handles:  # the table names a model this server did not load
            raise NotReady(
                f"model version {version} ({variant}) is not loaded here; loaded: "
                f"{sorted(self.handles)}",
                version=version,
            )
        rid = req.request_id or uuid.uuid4().hex
        ts = req.context.ts if req.context.ts is not None else int(time.time())
        served = await self._serve(req, rid, ts, variant, version)
        challenger = table.challenger
        if challenger in self.handles and shadowed(table, rid, variant):
            self._shadow(req, rid, ts, challenger, served)
        return served

    async def _serve(
        self, req: RecommendRequest, rid: str, ts: int, variant: str, version: str
    ) -> Served:
        # the replica skips a call that reaches it after this (wall clock: the server and its
        # replicas share a host here, and NTP keeps nodes within ms of a 0.5 s budget)
        call = Call(req, rid, ts, variant, time.time() + self.cfg.deadline_s)
        try:
            # on timeout wait_for withdraws the call: unsent, it never leaves this process
            batchers = self.shadow_batchers if variant == "shadow" else self.batchers
            outcome = await asyncio.wait_for(
                batchers[version].submit(call), timeout=self.cfg.deadline_s
            )
        except Exception as exc:  # a failed or late model path degrades, never a 500
            cause = getattr(exc, "cause", None) or exc  # Ray wraps what the replica raised
            outcome = Failed("deadline" if isinstance(exc, TimeoutError) else type(cause).__name__)
        if isinstance(outcome, Served):
            return outcome
        reason = "deadline" if outcome is None else outcome.reason
        items = fallback(req, self.popular[version], self.cfg)
        return Served(response(req, rid, ts, variant, version, items, {}, reason), {})

    def _shadow(
        self, req: RecommendRequest, rid: str, ts: int, version: str, served: Served
    ) -> None:
        """Fire and forget in a bounded set of slots: the user's response never waits for it."""
        if self.shadow_slots.locked():
            self.report.dropped += 1
            return

        async def run() -> None:
            async with self.shadow_slots:
                try:
                    shadow = await self._serve(req, rid, ts, "shadow", version)
                except Exception:
                    self.report.failed += 1
                    return
            shown = [i.video_id for i in served.response.items]
            self._book(shown, shadow)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def _book(self, shown: list[int], shadow: Served) -> None:
        """A shadow result is compared and handed to `on_shadow` one per turn of the event
        loop: a lingering batch's results arrive together, and taken in one turn they held
        the loop, and the champion's requests behind it, for ~0.5 ms."""
        self.unbooked.append((shown, shadow))
        if len(self.unbooked) == 1:
            asyncio.get_running_loop().call_soon(self._book_next)

    def _book_next(self) -> None:
        shown, shadow = self.unbooked.popleft()
        try:
            theirs = [i.video_id for i in shadow.response.items]
            comparison = None if shadow.response.degraded else compare(shown, theirs)
            self.on_shadow(ShadowResult(shown, shadow, comparison))
        finally:
            if self.unbooked:  # the next in the next turn, after the loop polls for I/O
                asyncio.get_running_loop().call_soon(self._book_next)

    def _keep(self, result: ShadowResult) -> None:
        if len(self.report.results) >= MAX_UNDRAINED:  # nobody drains: keep memory bounded
            self.report.dropped += 1
            return
        self.report.results.append(result)

    def drain(self) -> ShadowReport:
        """Shadow outcomes since the last call."""
        report, self.report = self.report, ShadowReport()
        return report


def _without(by_version: dict[str, V], version: str) -> dict[str, V]:
    """A copy without `version` (swapped in whole: readers see the old dict or the new)."""
    return {v: x for v, x in by_version.items() if v != version}
