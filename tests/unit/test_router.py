"""The server-side router's decisions with stand-in version apps (the real ones run in
tests/integration/test_serving.py): variant per user, deadline and failure fallback,
a route table naming an unloaded version, bounded shadow slots."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vidrec.config import ServingConfig
from vidrec.errors import ConfigError, NotReady
from vidrec.serving.api import RecommendRequest, RecommendResponse
from vidrec.serving.deployments import check_fits
from vidrec.serving.file_routes import FileRouteSource
from vidrec.serving.recommender import Call, Failed, Outcome, Served
from vidrec.serving.router import Router
from vidrec.serving.routing import RouteTable, assign

POPULAR = [7, 8, 9, 10]


class _Response:
    """A DeploymentResponse: awaitable once, cancellable (as Ray Serve's: a queued call is
    never sent, a running one is told)."""

    def __init__(self, call: Awaitable[Served]) -> None:
        self.task = asyncio.ensure_future(call)
        self.cancelled = False

    def __await__(self) -> Any:
        return self.task.__await__()

    def cancel(self) -> None:
        self.cancelled = True
        self.task.cancel()


class _Method:
    def __init__(self, fn: Callable[..., Awaitable[Served]]) -> None:
        self.fn = fn
        self.responses: list[_Response] = []

    def remote(self, *args: Any) -> _Response:
        self.responses.append(_Response(self.fn(*args)))
        return self.responses[-1]


class FakeApp:
    """A version app's handle: answers each call of a batch after `delay_s`, or raises
    `error` for the whole batch (a dead replica), or fails the calls of the users in `fails`."""

    def __init__(self, version: str, delay_s: float = 0.0, error: Exception | None = None):
        self.version, self.delay_s, self.error = version, delay_s, error
        self.late = False  # answer as a replica does for a call that reached it too late
        self.fails: set[int] = set()
        self.calls: list[str] = []
        self.batches: list[int] = []
        self.recommend = _Method(self._recommend)

    async def _recommend(self, calls: list[Call]) -> list[Outcome]:
        self.batches.append(len(calls))
        self.calls += [c.variant for c in calls]
        if self.late:
            return [None for _ in calls]
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return [self._one(c) for c in calls]

    def _one(self, c: Call) -> Outcome:
        if c.req.user_id in self.fails:
            return Failed("KeyError")
        resp = RecommendResponse(request_id=c.rid, ts=c.ts, user_id=c.req.user_id,
                                 variant=c.variant, model_version=self.version,
                                 items=[])  # fmt: skip
        return Served(resp, {})


def router(tmp_path: Path, table: RouteTable, **cfg: Any) -> Router:
    bundle = tmp_path / "bundle"
    (bundle / "fallback").mkdir(parents=True, exist_ok=True)
    (bundle / "fallback" / "popularity.json").write_text(json.dumps({"*|*": POPULAR}))
    routes = FileRouteSource(tmp_path / "routes.json")
    routes.set(table)
    return Router(routes, {"1": bundle, "2": bundle}, ServingConfig(**cfg))


def ask(r: Router, user: int, k: int = 3) -> Served:
    return asyncio.run(r.recommend(RecommendRequest(user_id=user, k=k, context={"ts": 100})))


def burst(r: Router, users: int) -> list[RecommendResponse]:
    """Users 0.. asking at once (one event loop turn), their responses in order."""

    async def gather() -> list[Served]:
        return list(await asyncio.gather(
            *(r.recommend(RecommendRequest(user_id=u, k=3)) for u in range(users))))  # fmt: skip

    return [s.response for s in asyncio.run(gather())]


def test_each_user_is_served_by_the_variant_the_table_assigns(tmp_path: Path) -> None:
    table = RouteTable(champion="1", challenger="2", canary_percent=30)
    r = router(tmp_path, table)
    r.attach({"1": FakeApp("1"), "2": FakeApp("2")})
    for user in range(40):
        resp = ask(r, user).response
        variant = assign(table, user)
        assert resp.variant == variant and not resp.degraded
        assert resp.model_version == ("2" if variant == "challenger" else "1")


def test_a_late_or_failing_version_degrades_to_popularity_with_the_reason(
    tmp_path: Path,
) -> None:
    r = router(tmp_path, RouteTable(champion="1"), deadline_s=0.05)
    app = FakeApp("1", delay_s=0.5)
    r.attach({"1": app})
    late = ask(r, 1).response
    assert late.degraded and late.reason == "deadline"
    assert [i.video_id for i in late.items] == POPULAR[:3]
    assert [x.cancelled for x in app.recommend.responses] == [True]  # not left to run for nobody
    app.late, app.delay_s = True, 0.0
    assert ask(r, 1).response.reason == "deadline"
    r.attach({"1": FakeApp("1", error=ConnectionError("replica died"))})
    failed = ask(r, 1).response
    assert failed.degraded and failed.reason == "ConnectionError"


def test_a_table_naming_an_unloaded_version_is_not_ready(tmp_path: Path) -> None:
    r = router(tmp_path, RouteTable(champion="2"))
    r.attach({"1": FakeApp("1")})
    with pytest.raises(NotReady) as exc:
        ask(r, 1)
    assert exc.value.http_status == 503 and "version 2" in str(exc.value)


def test_a_removed_version_gets_no_call_and_its_challenger_users_wait_on_the_champion(
    tmp_path: Path,
) -> None:
    table = RouteTable(champion="1", challenger="2", canary_percent=50, shadow_fraction=1.0)
    r = router(tmp_path, table)
    apps = {"1": FakeApp("1"), "2": FakeApp("2")}
    r.attach(apps)
    r.remove("2")
    served = [ask(r, user).response for user in range(20)]
    assert {"challenger"} < {assign(table, u) for u in range(20)}  # some would have seen it
    assert {(s.variant, s.model_version, s.degraded) for s in served} == {("champion", "1", False)}
    assert apps["2"].calls == [] and set(r.handles) == set(r.batchers) == {"1"}
    with pytest.raises(NotReady):  # named again before it is reloaded: as any unloaded one
        r.routes.set(RouteTable(champion="2"))
        ask(r, 1)


def test_shadow_never_delays_the_user_and_overflow_is_dropped_and_counted(
    tmp_path: Path,
) -> None:
    table = RouteTable(champion="1", challenger="2", shadow_fraction=1.0)
    r = router(tmp_path, table, shadow_queue=2, deadline_s=5)
    slow = FakeApp("2", delay_s=0.2)
    r.attach({"1": FakeApp("1"), "2": slow})

    async def burst() -> list[Served]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        served = [await r.recommend(RecommendRequest(user_id=u, k=3)) for u in range(5)]
        assert loop.time() - t0 < 0.1  # the 0.2 s shadow calls were not awaited
        await asyncio.sleep(0.7)  # let the two admitted shadow calls finish (one after the other)
        return served

    served = asyncio.run(burst())
    assert all(s.response.variant == "champion" for s in served)
    report = r.drain()
    assert slow.calls == ["shadow", "shadow"]  # two slots: two sent
    assert slow.batches == [2]  # in one model call: the first lingered for the second
    assert report.dropped == 3 and len(report.results) == 2 and report.failed == 0
    assert all(res.shadow.response.variant == "shadow" for res in report.results)
    assert r.drain().results == []  # drained once


def test_a_replica_skips_a_call_that_reaches_it_after_its_deadline() -> None:
    from vidrec.serving.deployments import ModelVersion

    replica = ModelVersion.func_or_class("1", ServingConfig())  # no stages: a real call fails
    req = RecommendRequest(user_id=1, k=3, context={"ts": 100})
    late = Call(req, "r1", 100, "champion", time.time() - 0.001)
    in_time = Call(req, "r2", 100, "champion", time.time() + 60)
    # the late one is skipped; the one in time goes on to the (missing) stages and fails alone
    assert asyncio.run(replica.recommend([late, in_time])) == [None, Failed("AssertionError")]


def test_a_handle_that_cannot_send_the_call_degrades_too(tmp_path: Path) -> None:
    class Unsendable:
        class recommend:  # a handle's method
            @staticmethod
            def remote(*args: Any) -> Any:
                raise RuntimeError("router not ready")

    r = router(tmp_path, RouteTable(champion="1"))
    r.attach({"1": Unsendable()})
    got = ask(r, 1).response
    assert got.degraded and got.reason == "RuntimeError"


def test_requests_that_arrive_while_the_app_is_busy_share_a_call_and_fail_alone(
    tmp_path: Path,
) -> None:
    r = router(tmp_path, RouteTable(champion="1"), calls_in_flight=1, max_batch=8,
               replicas_per_version=1)  # fmt: skip
    app = FakeApp("1", delay_s=0.05)
    app.fails = {3}
    r.attach({"1": app})

    served = burst(r, 6)
    assert app.batches == [1, 5]  # the first alone; the rest waited for it and went together
    assert [s.user_id for s in served] == list(range(6))
    assert [s.degraded for s in served] == [u == 3 for u in range(6)]
    assert served[3].reason == "KeyError" and [i.video_id for i in served[3].items] == POPULAR[:3]


def test_each_replica_of_a_version_gets_a_call_of_its_own(tmp_path: Path) -> None:
    r = router(
        tmp_path, RouteTable(champion="1"), calls_in_flight=1, max_batch=8, replicas_per_version=2
    )
    app = FakeApp("1", delay_s=0.05)
    r.attach({"1": app})

    served = burst(r, 6)
    assert app.batches == [1, 1, 4]  # two calls at once (one per replica), then the rest
    assert not any(s.degraded for s in served)


def test_a_version_runs_two_replicas_fused_and_one_split_unless_told() -> None:
    assert ServingConfig().replicas == 2 and ServingConfig(topology="split").replicas == 1
    assert ServingConfig(topology="split", replicas_per_version=3).replicas == 3


@pytest.mark.parametrize(
    ("topology", "replicas", "versions", "fits"),
    [("fused", 2, 2, True), ("fused", 5, 2, True), ("fused", 6, 2, False),
     ("split", 2, 2, True), ("split", 3, 2, False), ("fused", 8, 1, True),
     ("fused", None, 5, True), ("fused", None, 6, False), ("split", None, 3, True),
     ("split", None, 4, False)],
)  # fmt: skip
def test_replicas_that_ray_could_not_start_are_refused_by_name(
    topology: str, replicas: int | None, versions: int, fits: bool
) -> None:
    cfg = ServingConfig(topology=topology, replicas_per_version=replicas)
    if fits:
        check_fits(cfg, versions)
        return
    default = r" \(its default\)" if replicas is None else ""
    refused = rf"serving\.replicas_per_version = \d{default}: .* more than Ray's 2 CPUs"
    with pytest.raises(ConfigError, match=refused):
        check_fits(cfg, versions)


def test_a_batch_of_shadow_results_is_booked_one_per_turn_of_the_event_loop(
    tmp_path: Path,
) -> None:
    table = RouteTable(champion="1", challenger="2", shadow_fraction=1.0)
    r = router(tmp_path, table, shadow_linger_s=0.05)
    r.attach({"1": FakeApp("1"), "2": FakeApp("2")})
    turns = 0
    booked_at: list[int] = []
    r.on_shadow = lambda result: booked_at.append(turns)

    async def count_turns(stop: asyncio.Event) -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)  # once per turn of the loop

    async def run() -> None:
        stop = asyncio.Event()
        counter = asyncio.create_task(count_turns(stop))
        await asyncio.gather(*(r.recommend(RecommendRequest(user_id=u, k=3)) for u in range(8)))
        await asyncio.sleep(0.3)  # the lingering shadow batch leaves and answers
        stop.set()
        await counter

    asyncio.run(run())
    app = r.handles["2"]
    assert app.batches == [8]  # the eight results arrived together
    # taken together they would share a turn: requests waiting on the loop would wait for all
    assert len(booked_at) == 8 and len(set(booked_at)) == 8
