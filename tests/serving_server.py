"""Start `vidrec serve` as users run it (a subprocess, isolated HOME) on the trained
registry and store of the `served_models` fixture; stop it with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


@contextlib.contextmanager
def start_server(
    models: dict[str, Any], topology: str, name: str | None = None
) -> Iterator[dict[str, Any]]:
    tmp: Path = models["tmp"] / (name or topology)
    tmp.mkdir()
    cfg_file = tmp / "cfg.toml"
    cfg_file.write_text(models["config"] + f'[serving]\ntopology = "{topology}"\n')
    port = _free_port()
    routes = tmp / "serve" / "routes.json"
    faults, log_dir = tmp / "faults.json", tmp / "serve" / "log"
    env = {**os.environ, "HOME": str(tmp)}  # no stray ~/.ray/auth_token
    log = open(tmp / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidrec.cli", "serve", "--port", str(port),
         "--store", models["store"], "--routes", str(routes), "--config", str(cfg_file),
         "--faults", str(faults), "--log-dir", str(log_dir), "--json"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        early = _wait_ready(url, proc, tmp / "serve.log")
        yield {"url": url, "port": port, "routes": routes, "ts": models["ts"], "proc": proc,
               "faults": faults, "log_dir": log_dir, "early": early}  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> list[httpx.Response]:
    """Poll until ready; returns the answers to predictions sent while it was loading."""
    early: list[httpx.Response] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vidrec serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/models/vidrec/ready", timeout=2).status_code == 200:
                return early
            body = {"instances": [{"user_id": 1}]}
            r = httpx.post(f"{url}/v1/models/vidrec:predict", json=body, timeout=5)
            if r.status_code == 200:  # became ready between the two calls
                return early
            early.append(r)
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"vidrec serve not ready in 240 s:\n{log.read_text()[-3000:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
