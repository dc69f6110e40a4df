"""`vidrec traffic`'s summary as a terminal's lines (pure): what the load did, what
became of the feedback, who was served by which version, and a row per variant."""

from __future__ import annotations

from typing import Any

HEADER = [
    "| variant | requests | degraded | CTR | watch s per impression | "
    "true engagement per request |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
]


def render(s: dict[str, Any]) -> list[str]:
    lat = s["latency"]
    failed = sum(n for code, n in s["status"].items() if not code.startswith("2"))
    errors = sum(s["errors"].values())
    lines = [
        f"{s['url']}: {s['ok']:,} of {s['planned']:,} requests answered 2xx in "
        f"{s['seconds']:.0f} s ({s['achieved_rps']:.1f}/s), {failed:,} other statuses, "
        f"{errors:,} transport errors, {s['dropped_client']:,} not sent in time",
        f"latency p50 / p95 / p99: {_ms(lat['p50_ms'])} / {_ms(lat['p95_ms'])} / "
        f"{_ms(lat['p99_ms'])} ms",
        "feedback: " + _counts(s["feedback"]),
        f"users: {s['users']:,}; by model version: "
        + (", ".join(f"v{v} {n:,}" for v, n in s["users_by_version"].items()) or "none"),
    ]
    if failed:
        lines.append("statuses: " + _counts(s["status"]))
    if s["errors"]:
        lines.append("errors: " + _counts(s["errors"]))
    if s["newcomer_requests"]:
        lines.append(f"requests from a market the log never saw: {s['newcomer_requests']:,}")
    lines += ["", *HEADER]
    for name, v in s["variants"].items():
        lines.append(f"| {name} | {v['requests']:,} | {v['degraded']:,} | {v['ctr']:.4f} | "
                     f"{v['watch_seconds_per_impression']:.2f} | "
                     f"{v['true_engagement_per_request']:.4f} |")  # fmt: skip
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in counts.items()) or "none"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
