"""Fault injection: off without a file, per stage and version, a crash only once per change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from vidrec.serving.faults import FaultFile

CRASH = "from pathlib import Path; from vidrec.serving.faults import FaultFile; " \
        "FaultFile(Path({path!r})).apply('ranking', '2'); print('alive')"  # fmt: skip


def test_no_file_means_no_fault(tmp_path: Path) -> None:
    FaultFile(None).apply("ranking", "1")
    FaultFile(tmp_path / "absent.json").apply("ranking", "1")


def test_a_delay_hits_only_its_stage_and_version(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": [{"stage": "ranking", "version": "2", "delay_s": 0.3}]}))
    faults = FaultFile(path)
    for stage, version, slow in (("ranking", "2", True), ("ranking", "1", False),
                                 ("retrieval", "2", False)):  # fmt: skip
        t0 = time.perf_counter()
        faults.apply(stage, version)  # type: ignore[arg-type]
        assert (time.perf_counter() - t0 >= 0.3) == slow


def test_a_crash_kills_the_process_once_per_file_change(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": [{"stage": "ranking", "crash": True}]}))

    def run() -> subprocess.CompletedProcess[str]:
        code = CRASH.format(path=str(path))
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    first, second = run(), run()
    assert first.returncode == 17 and "alive" not in first.stdout
    assert second.returncode == 0 and "alive" in second.stdout  # the restarted replica serves
