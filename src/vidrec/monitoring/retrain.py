"""Start the training pipeline when drift is sustained, without waiting for it.

Locally a `python -m vidrec train` subprocess (in a cluster: a Job, `job_retrainer`; same
interface). The pipeline's own gates decide: a model that passes is registered
as the `challenger` (the champion alias is never moved here; promotion is the
rollout's job); one that fails is not registered at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol


class Retrainer(Protocol):
    @property
    def running(self) -> bool: ...

    def start(self, reason: str) -> dict[str, Any]:
        """Start a run; returns what was started (for the event log)."""
        ...

    def poll(self) -> dict[str, Any] | None:
        """The finished run's result, once; None while running or idle."""
        ...


class LocalRetrainer:
    def __init__(self, data: Path, config: Path | None, runs: Path) -> None:
        self.data, self.config, self.runs = data, config, runs
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, reason: str) -> dict[str, Any]:
        run_dir = self.runs / time.strftime("retrain-%Y%m%dT%H%M%S")
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "vidrec", "train", "--data", str(self.data),
               "--run-dir", str(run_dir / "run"), "--json"]  # fmt: skip
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        (run_dir / "reason.txt").write_text(reason + "\n")
        with open(run_dir / "stdout.json", "wb") as out, open(run_dir / "stderr.log", "wb") as err:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self._run_dir = run_dir
        return {"run_dir": str(run_dir), "pid": self._proc.pid, "command": cmd}

    def poll(self) -> dict[str, Any] | None:
        if self._proc is None or self._run_dir is None or self._proc.poll() is None:
            return None
        code, run_dir = self._proc.returncode, self._run_dir
        self._proc = self._run_dir = None
        return outcome(code, run_dir)


def outcome(code: int, run_dir: Path) -> dict[str, Any]:
    """registered (as challenger or, with no champion yet, champion), rejected by a gate
    (exit 3), or failed (anything else; stderr's tail says why)."""
    try:
        summary: dict[str, Any] = json.loads((run_dir / "stdout.json").read_text())
    except (OSError, json.JSONDecodeError):
        summary = {}
    if code == 0 and summary.get("registered"):
        return {"result": "registered", "version": summary.get("version"),
                "alias": summary.get("alias"), "run_dir": str(run_dir)}  # fmt: skip
    if code == 3:
        return {"result": "rejected", "failed": summary.get("failed"), "run_dir": str(run_dir)}
    tail = (run_dir / "stderr.log").read_text(errors="replace")[-2000:]
    return {"result": "failed", "exit_code": code, "stderr_tail": tail, "run_dir": str(run_dir)}
