"""`vidrec bench serve`'s report as the README's table (`serve.md`) and its verdict lines."""

from __future__ import annotations

from typing import Any

from helpers import cells
from vidrec.bench.serve_table import table, verdict_lines


def run(p50: float, p99: float, rps: float | None = None, cpu: float = 9.4) -> dict[str, Any]:
    out = {"p50_ms": p50, "p99_ms": p99, "cpu_ms_per_request": cpu}
    return out | ({"achieved_rps": rps} if rps is not None else {})


def report() -> dict[str, Any]:
    size = {
        "noop": {"50": run(5.6, 9.7, 50.0), "100": run(4.2, 7.5, 99.6)},
        "stock_noop": {"50": run(8.1, 12.0, 50.0), "100": run(7.3, 11.2, 100.0, cpu=11.0)},
        "endpoint": {"50": run(11.4, 16.6, 50.0), "100": run(8.24, 14.62, 100.0)},
        "in_process": {"50": run(4.2, 8.7), "100": run(3.8, 6.2)},
    }
    return {
        "rates": [50.0, 100.0],
        "sizes": {"100000": size, "1000000": {**size, "endpoint": {"50": run(1, 2, 50.0)}}},
        "replicas": {"replicas": 1, "endpoint": {"100": run(9.7, 16.9, 100.0)}},
        "unbatched": {"endpoint": {"50": run(9.9, 14.6, 50.0), "100": run(7.0, 12.1, 100.0)}},
        "split": {"endpoint": {"100": run(30.2, 89.1, 100.0, cpu=13.0)}},
    }


def test_a_row_per_size_and_rate_with_the_top_rates_endpoint_in_bold() -> None:
    lines = table(report())
    assert cells(lines[0])[6] == "1 replica"
    assert len(lines) == 2 + 2 * 2
    assert lines[3] == ("| 100k | 100 | 4.2 / 7.5 (100) · 9 | 7.3 / 11.2 (100) · 11 | "
                        "**8.2 / 14.6 (100) · 9** | 7.0 / 12.1 (100) · 9 | 9.7 / 16.9 (100) · 9 | "
                        "3.8 / 6.2 · 9 | 30.2 / 89.1 (100) · 13 |")  # fmt: skip


def test_runs_of_the_first_size_alone_and_missing_runs_leave_cells_empty() -> None:
    rows = [cells(row) for row in table(report())[2:]]
    assert all(len(r) == 9 for r in rows)
    assert rows[0][6] == "" and rows[0][8] == ""  # 100k at 50: no replicas or split run
    assert rows[0][5] == "9.9 / 14.6 (50) · 9"
    assert rows[2][4] == "1.0 / 2.0 (50) · 9"  # 1M at 50: not bold
    assert rows[3][4:7] == ["", "", ""] and rows[3][8] == ""  # 1M at 100: none of these


def test_a_report_from_before_the_stock_no_op_leaves_its_column_empty() -> None:
    r = report()
    for size in r["sizes"].values():
        del size["stock_noop"]
    rows = [cells(row) for row in table(r)[2:]]
    assert [row[3] for row in rows] == ["", "", "", ""] and rows[1][2] == "4.2 / 7.5 (100) · 9"


def test_more_replicas_than_one_are_plural() -> None:
    r = report()
    r["replicas"]["replicas"] = 2
    assert " 2 replicas | " in table(r)[0]


def test_the_verdict_says_what_is_met() -> None:
    v = {"rate": "100", "100000": {"p50_vs_noop": 1.955, "p50_vs_noop_ok": False,
                                   "p99_ms": 14.62, "p99_ok": True, "errors": 0},
         "shadow_p99_rise": 0.1556, "shadow_ok": False}  # fmt: skip
    assert verdict_lines(v) == [
        "100k at 100 req/s: p50 1.955x the no-op's (NOT met), p99 14.62 ms (met), 0 errors",
        "shadow at 100 %: champion p99 +16 % (NOT met)",
    ]
    v["100000"] |= {"p50_vs_stock_noop": 0.98, "p50_vs_stock_noop_within": True}
    assert verdict_lines(v)[0] == (
        "100k at 100 req/s: p50 1.955x the no-op's (NOT met; 0.98x "
        "the stock Ray Serve no-op's), p99 14.62 ms (met), 0 errors"
    )
    v["100000"] |= {"p50_vs_stock_noop": None, "stock_noop_failed": 46}
    assert "(NOT met; the stock Ray Serve no-op lost 46 requests)" in verdict_lines(v)[0]


def test_a_cell_says_how_many_requests_got_no_answer() -> None:
    r = report()
    r["sizes"]["100000"]["stock_noop"]["100"] |= {"sent": 1200, "ok": 1154}
    row = cells(table(r)[3])
    assert row[3] == "7.3 / 11.2 (100, 46 lost) · 11" and row[2] == "4.2 / 7.5 (100) · 9"
