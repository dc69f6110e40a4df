"""The serving benchmark's pure parts: the in-process open loop and the verdict."""

from __future__ import annotations

import os
import time

from vidrec.bench.load import failed, ratio
from vidrec.bench.serve import (
    ROLES,
    TARGETS,
    degraded,
    median_run,
    open_loop_local,
    role_of,
    shadow_order,
    shadow_rise,
    verdict,
    with_cpu,
)


def test_a_slow_call_queues_the_next_ones() -> None:
    fast = open_loop_local(lambda _i: None, rate=50, duration_s=0.4, warmup_s=0.0)
    slow = open_loop_local(lambda _i: time.sleep(0.05), rate=50, duration_s=0.4, warmup_s=0.0)
    assert fast["ok"] == slow["ok"] == 20
    # each call takes 2.5 intervals: the last waits for the 19 before it
    assert slow["p99_ms"] > 19 * 30 and fast["p99_ms"] < slow["p50_ms"]


def report(p50: float, p99: float, rise: float | None, ok: int = 100) -> dict[str, object]:
    run = {"p50_ms": p50, "p99_ms": p99, "sent": 100, "ok": ok}
    stock = {"p50_ms": 100.0, "p99_ms": 900.0, "sent": 100, "ok": 54}
    return {
        "rates": [25.0, 100.0],
        "sizes": {
            "100000": {
                "endpoint": {"100": run},
                "stock_noop": {"100": stock},
                "ratios": {"100": {"p50_vs_noop": p50 / 8}},
            }
        },
        "shadow": {"p99_rise": rise},
    }


def test_the_verdict_applies_the_targets_at_the_highest_rate() -> None:
    good = verdict(report(10.0, 20.0, 0.05))
    assert good["rate"] == "100" and good["100000"]["p50_vs_noop_ok"] and good["shadow_ok"]
    assert good["100000"]["p99_ok"] and good["100000"]["errors"] == 0
    bad = verdict(report(8 * TARGETS["p50_vs_noop"] + 1, 31.0, None))
    assert not bad["100000"]["p50_vs_noop_ok"] and not bad["100000"]["p99_ok"]
    assert not bad["shadow_ok"]  # no measurement is not a pass
    # a p99 of the answered requests alone is no pass when some got no answer
    lost = verdict(report(10.0, 20.0, 0.05, ok=99))["100000"]
    assert lost["errors"] == 1 and not lost["p99_ok"]
    assert good["100000"]["stock_noop_failed"] == 46


def test_a_run_that_lost_requests_has_no_ratio() -> None:
    whole = {"p50_ms": 20.0, "sent": 10, "ok": 10}
    lossy = {"p50_ms": 100.0, "sent": 10, "ok": 6}
    assert ratio(whole, {"p50_ms": 10.0, "sent": 10, "ok": 10}) == 2.0
    assert ratio(whole, lossy) is None and ratio(lossy, whole) is None
    assert ratio(whole, {"p50_ms": 5.0}) == 4.0  # in-process runs count no sends
    assert failed(lossy) == 4 and failed({"p50_ms": 5.0}) == 0


def test_the_shadow_rise_pools_the_runs_on_each_side() -> None:
    def runs(*p99s: float | None) -> list[dict[str, object]]:
        return [{"p99_ms": p} for p in p99s]

    # ABBA: 20, 24, 26, 22 ms -> (24 + 26) / (20 + 22) - 1; a drifting machine alone
    # (20, 22, 24, 26) would count as a rise with one off/on pair, far less with both
    assert shadow_rise(runs(20.0, 22.0), runs(24.0, 26.0)) == round(50 / 42 - 1, 4)
    assert shadow_rise(runs(20.0, 26.0), runs(22.0, 24.0)) == 0.0
    assert shadow_rise(runs(20.0, None), runs(24.0, 26.0)) is None  # a run without a p99
    assert shadow_rise([], runs(24.0)) is None


def test_processes_get_their_role_in_a_run() -> None:
    roles = {10: "server", 11: "driver"}
    assert role_of(10, "python -m vidrec bench serve", roles) == "server"
    assert role_of(11, "python -c from multiprocessing.spawn import spawn_main", roles) == "driver"
    assert role_of(12, "ray::ServeReplica:vidrec-v1:model-v1", roles) == "replicas"
    assert role_of(13, "/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet", roles)
    assert role_of(14, "ray::ServeController", roles) == "ray"
    assert role_of(15, "/usr/bin/prometheus --config.file=x", roles) is None
    assert role_of(16, "python array_tool.py", roles) is None  # "ray" only as a word


def test_cpu_is_split_by_role_and_adds_up() -> None:
    def burn() -> dict[str, object]:
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
        return {"ok": 1}

    out = with_cpu(burn, rate=10, duration_s=1.0, roles={os.getpid(): "server"})
    split = out["cpu_ms_per_request_by_role"]
    assert set(split) == {*ROLES, "other"} and out["ok"] == 1
    assert split["server"] >= 0.3 * 1000 / 10 * 0.95  # 0.3 s over 10 requests, at least
    assert abs(sum(split.values()) - out["cpu_ms_per_request"]) < 0.1
    assert "cpu_ms_per_request_by_role" not in with_cpu(burn, rate=10, duration_s=1.0)


def test_the_no_ops_run_beside_the_endpoint_and_alternate_with_it_at_the_top_rate() -> None:
    from vidrec.bench.serve import ROUNDS, STOCK, _Bench

    bench = _Bench.__new__(_Bench)  # no Ray, no server: the order of runs alone
    order: list[tuple[str, float]] = []

    def http(model: str, rate: float, duration_s: float, ts: int) -> dict[str, object]:
        order.append((model, rate))
        return {"model": model, "rate": rate, "p50_ms": len(order), "p99_ms": 100 - len(order)}

    bench._http = http  # type: ignore[method-assign]
    got = bench._paired(["noop", STOCK], "vidrec-100000", [25.0, 100.0], 1.0, 0)
    noop, stock, runs = got["noop"], got[STOCK], got["vidrec-100000"]
    forth = [("noop", 100.0), (STOCK, 100.0), ("vidrec-100000", 100.0)]
    assert ROUNDS == 3 and order == [(m, 25.0) for m, _ in forth] + [*forth, *forth[::-1], *forth]
    assert runs["25"] == {"model": "vidrec-100000", "rate": 25.0, "p50_ms": 3, "p99_ms": 97}
    # the top rate: each side's median run by p99 (the no-op's 96, 91, 90; the stock no-op's
    # 95, 92, 89; the endpoint's 94, 93, 88), whole: its own p50
    assert noop["100"]["p99_ms"] == 91 and noop["100"]["p50_ms"] == 9
    assert stock["100"]["p99_ms"] == 92 and stock["100"]["p50_ms"] == 8
    assert [r["p50_ms"] for r in runs["100"]["rounds"]] == [6, 7, 12]
    assert runs["100"]["p99_ms"] == 93 and runs["100"]["p50_ms"] == 7


def test_unbatched_runs_beside_the_batched_endpoint_and_is_compared_with_those_runs() -> None:
    from vidrec.bench.serve import UNBATCHED, _Bench

    bench = _Bench.__new__(_Bench)
    order: list[str] = []
    attached: list[dict[str, str]] = []

    def http(model: str, rate: float, duration_s: float, ts: int) -> dict[str, object]:
        order.append(model)
        p50 = 4.0 if model == UNBATCHED else 8.0  # unbatched twice as fast, in every run
        return {"p50_ms": p50 + len(order) / 100, "p99_ms": 2 * p50}

    bench._http = http  # type: ignore[method-assign]
    bench.models = {UNBATCHED: type("M", (), {"attach": attached.append})()}
    got = bench._unbatched(100_000, {"1": "handle"}, [25.0, 100.0], 1.0, 0)
    assert attached == [{"1": "handle"}]
    b, u = "vidrec-100000", UNBATCHED
    assert order == [b, u, b, u, u, b, b, u]  # each rate a pair, the top rate alternating
    assert got["ratios"]["100"]["p99_vs_batched"] == 0.5
    assert got["batched"]["25"]["p50_ms"] == 8.01 and got["endpoint"]["25"]["p50_ms"] == 4.02


def test_stage_means_are_of_the_requests_between_two_readings() -> None:
    from vidrec.bench.serve import stage_ms

    before = {"retrieval": (1.0, 100.0), "ranking": (0.5, 100.0), "total": (4.0, 100.0)}
    after = {"retrieval": (1.3, 200.0), "ranking": (0.5, 100.0), "total": (4.5, 200.0),
             "features": (0.02, 10.0)}  # fmt: skip
    # ranking: no request in between, left out; features: first seen, from 0
    assert stage_ms(before, after) == {"retrieval": 3.0, "total": 5.0, "features": 2.0}


def test_the_median_run_is_a_whole_run_and_lists_the_rounds() -> None:
    p50_p99 = [(9.0, 30.0), (12.0, None), (10.0, 20.0), (11.0, 25.0)]
    runs = [{"p50_ms": a, "p99_ms": b, "ok": i} for i, (a, b) in enumerate(p50_p99, 1)]
    got = median_run(runs)
    assert got["ok"] == 4 and got["p50_ms"] == 11.0  # p99s 20, 25, 30, none: the lower middle
    assert got["rounds"] == [{"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]} for r in runs]
    assert median_run(runs[:1]) == runs[0]


def test_fallback_answers_are_counted_apart_from_shadow_calls() -> None:
    from prometheus_client import CollectorRegistry

    from vidrec.serving.metrics import ServingMetrics

    m = ServingMetrics(CollectorRegistry())
    assert degraded(m.degraded) == 0
    m.degraded.labels("champion", "deadline").inc(3)
    m.degraded.labels("challenger", "RayActorError").inc()
    m.degraded.labels("shadow", "deadline").inc(5)  # the user was answered by the model
    assert degraded(m.degraded) == 4


def test_each_shadow_cycle_cancels_a_drift_and_the_next_opens_from_the_other_end() -> None:
    order = shadow_order(3)
    assert order[:8] == ["off", "on", "on", "off", "on", "off", "off", "on"]
    assert len(order) == 12 and order.count("on") == 6
    three = shadow_order(2, ("off", "on", "noop"))
    assert three == ["off", "on", "noop", "noop", "on", "off",
                     "noop", "on", "off", "off", "on", "noop"]  # fmt: skip
    for arms, runs in ((2, order), (3, three)):
        for c in range(0, len(runs), 2 * arms):  # a palindrome: a drift adds alike to each arm
            cycle = runs[c : c + 2 * arms]
            assert cycle == cycle[::-1]
    # a machine slowing by 1 ms a run: no rise over whole cycles, for any pair of arms
    p99s = {arm: [{"p99_ms": 20.0 + i} for i, a in enumerate(three) if a == arm]
            for arm in ("off", "on", "noop")}  # fmt: skip
    assert shadow_rise(p99s["off"], p99s["on"]) == shadow_rise(p99s["off"], p99s["noop"]) == 0.0
