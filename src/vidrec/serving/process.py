"""`vidrec serve` as a child process, the way users run it (the demo and the tests).

It gets a process group of its own, so stopping it stops Ray's processes too, and a
HOME of its own: a stray `~/.ray/auth_token` makes Ray refuse local clusters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def serve_process(args: list[str], home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m vidrec serve ARGS`, output to `log`; on exit the whole group gets SIGTERM,
    then SIGKILL if it is still there after 60 s. Readiness is the caller's to wait for."""
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vidrec", "serve", *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)},
            start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
