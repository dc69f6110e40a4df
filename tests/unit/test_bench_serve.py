"""The serving benchmark's pure parts: the in-process open loop and the verdict."""

from __future__ import annotations

import time

from vidrec.bench.serve import TARGETS, open_loop_local, verdict


def test_a_slow_call_queues_the_next_ones() -> None:
    fast = open_loop_local(lambda _i: None, rate=50, duration_s=0.4, warmup_s=0.0)
    slow = open_loop_local(lambda _i: time.sleep(0.05), rate=50, duration_s=0.4, warmup_s=0.0)
    assert fast["ok"] == slow["ok"] == 20
    # each call takes 2.5 intervals: the last waits for the 19 before it
    assert slow["p99_ms"] > 19 * 30 and fast["p99_ms"] < slow["p50_ms"]


def report(p50: float, p99: float, rise: float | None) -> dict[str, object]:
    run = {"p50_ms": p50, "p99_ms": p99, "sent": 100, "ok": 99}
    return {
        "rates": [25.0, 100.0],
        "sizes": {
            "100000": {"endpoint": {"100": run}, "ratios": {"100": {"p50_vs_noop": p50 / 8}}}
        },
        "shadow": {"p99_rise": rise},
    }


def test_the_verdict_applies_the_targets_at_the_highest_rate() -> None:
    good = verdict(report(10.0, 20.0, 0.05))
    assert good["rate"] == "100" and good["100000"]["p50_vs_noop_ok"] and good["shadow_ok"]
    assert good["100000"]["p99_ok"] and good["100000"]["errors"] == 1
    bad = verdict(report(8 * TARGETS["p50_vs_noop"] + 1, 31.0, None))
    assert not bad["100000"]["p50_vs_noop_ok"] and not bad["100000"]["p99_ok"]
    assert not bad["shadow_ok"]  # no measurement is not a pass
