"""`vidrec traffic`'s summary as a terminal's lines."""

from __future__ import annotations

from typing import Any

from vidrec.traffic.summary_lines import render


def summary(**kw: Any) -> dict[str, Any]:
    variant = {
        "requests": 90,
        "degraded": 2,
        "impressions": 900,
        "clicks": 120,
        "ctr": 0.13333,
        "watch_seconds_per_impression": 22.7714,
        "true_engagement_per_request": 1.06601,
    }
    return {"url": "http://127.0.0.1:8080", "planned": 100, "ok": 97, "status": {"200": 97},
            "errors": {}, "dropped_client": 0, "achieved_rps": 19.96,
            "latency": {"p50_ms": 8.04, "p95_ms": 12.0, "p99_ms": 15.26},
            "feedback": {"accepted": 120}, "newcomer_requests": 0, "users": 80,
            "users_by_version": {"1": 70, "2": 12},
            "variants": {"challenger": variant | {"requests": 10}, "champion": variant},
            "seconds": 5.02} | kw  # fmt: skip


def test_the_load_the_feedback_the_users_and_a_row_per_variant() -> None:
    lines = render(summary())
    assert lines[0] == ("http://127.0.0.1:8080: 97 of 100 requests answered 2xx in 5 s (20.0/s), "
                        "0 other statuses, 0 transport errors, 0 not sent in time")  # fmt: skip
    assert lines[1] == "latency p50 / p95 / p99: 8.0 / 12.0 / 15.3 ms"
    assert lines[2] == "feedback: accepted 120"
    assert lines[3] == "users: 80; by model version: v1 70, v2 12"
    assert lines[4] == "" and lines[5].startswith("| variant | requests | degraded | CTR")
    assert lines[7:] == ["| challenger | 10 | 2 | 0.1333 | 22.77 | 1.0660 |",
                         "| champion | 90 | 2 | 0.1333 | 22.77 | 1.0660 |"]  # fmt: skip


def test_failures_are_spelled_out_and_nothing_answered_shows_no_latency() -> None:
    lines = render(summary(ok=0, status={"503": 60}, errors={"ClientConnectorError": 40},
                           latency=dict.fromkeys(("p50_ms", "p95_ms", "p99_ms")),
                           feedback={}, users=0, users_by_version={}, variants={},
                           newcomer_requests=7))  # fmt: skip
    assert "0 of 100 requests answered 2xx" in lines[0]
    assert "60 other statuses, 40 transport errors" in lines[0]
    assert lines[1] == "latency p50 / p95 / p99: - / - / - ms"
    assert lines[2] == "feedback: none" and lines[3] == "users: 0; by model version: none"
    assert lines[4:7] == ["statuses: 503 60", "errors: ClientConnectorError 40",
                          "requests from a market the log never saw: 7"]  # fmt: skip
    assert lines[-1] == "| --- | ---: | ---: | ---: | ---: | ---: |"  # no variant served
