"""A benchmark's report, table and plot paths: the README copies the table byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

from vidrec.bench.files import save


def test_save_writes_the_report_and_the_table_and_names_all_three(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "serve"  # not there yet
    lines = ["| a | b |", "| --- | --- |", "| 1 | 2 |"]
    files = save(out, "serve", {"p50_ms": 4.25, "path": tmp_path}, lines)
    assert files == {"report": str(out / "serve.json"), "table": str(out / "serve.md"),
                     "plot": str(out / "serve.png")}  # fmt: skip
    assert Path(files["table"]).read_bytes() == b"| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    assert json.loads(Path(files["report"]).read_text()) == {"p50_ms": 4.25, "path": str(tmp_path)}
    assert not Path(files["plot"]).exists()  # the benchmark draws it
