"""Fault injection: off without a file, per stage and version, a crash only once per change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vidrec.serving.faults import FaultFile, shuffled
from vidrec.serving.recommender import Ranked

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


def ranked(n: int) -> Ranked:
    ids = np.arange(100, 100 + n, dtype=np.int64)
    creators = np.where(ids % 3 == 0, np.nan, ids % 7).astype(np.float64)
    scores = np.linspace(1.0, 0.0, n)  # best first, as ranking leaves them
    return Ranked(ids, creators, scores, [], 0.0, 0.0, {}, [])


def test_a_shuffled_ranking_keeps_its_candidates_and_scores_in_another_order() -> None:
    good = ranked(50)
    bad = shuffled(good, "r1")
    pairs = {(c.video_id, c.creator_id) for c in good.ranked()}
    assert {(c.video_id, c.creator_id) for c in bad.ranked()} == pairs  # creators travel along
    assert [c.score for c in bad.ranked()] == [c.score for c in good.ranked()]  # best first
    assert bad.ids.tolist() != good.ids.tolist()
    # the request's own order: the same id shuffles alike, another differently
    assert shuffled(good, "r1").ids.tolist() == bad.ids.tolist()
    assert shuffled(good, "r2").ids.tolist() != bad.ids.tolist()
