"""Start `vidrec serve` as users run it (`vidrec.serving.process`) on the trained registry
and store of the `served_models` fixture."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from vidrec.ports import free_port
from vidrec.serving.feedback import SCHEMAS
from vidrec.serving.process import serve_process

WATCH_SCHEMA = SCHEMAS["watches"]


@contextlib.contextmanager
def start_server(
    models: dict[str, Any], topology: str, name: str | None = None, serving: str = ""
) -> Iterator[dict[str, Any]]:
    """`serving`: more `[serving]` lines (TOML)."""
    tmp: Path = models["tmp"] / (name or topology)
    tmp.mkdir()
    cfg_file = tmp / "cfg.toml"
    cfg_file.write_text(models["config"] + f'[serving]\ntopology = "{topology}"\n{serving}\n')
    port = free_port()
    routes = tmp / "serve" / "routes.json"
    faults, log_dir = tmp / "faults.json", tmp / "serve" / "log"
    args = ["--port", str(port), "--store", models["store"], "--routes", str(routes),
            "--config", str(cfg_file), "--faults", str(faults), "--log-dir", str(log_dir),
            "--json"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    expired = _old_part(log_dir / "watches", days=8)  # past the default retention (7 days)
    with serve_process(args, tmp, tmp / "serve.log") as proc:
        early, health = _wait_ready(url, proc, tmp / "serve.log")
        _until_expired(url, expired)
        yield {"url": url, "port": port, "routes": routes, "ts": models["ts"], "proc": proc,
               "faults": faults, "log_dir": log_dir, "early": early, "early_health": health,
               "serve_log": tmp / "serve.log", "expired": expired}  # fmt: skip


def _until_expired(url: str, part: Path) -> None:
    """A request starts the server's tick, whose first run applies the log's retention:
    waited for here, so no test lists the part and then finds it gone (test_serving.py
    checks that it went)."""
    httpx.post(f"{url}/v1/models/vidrec:predict", json={"instances": [{"user_id": 1}]}, timeout=30)
    deadline = time.monotonic() + 15
    while part.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _old_part(folder: Path, days: float) -> Path:
    """An empty watch-log part last written `days` ago, as an earlier server would have left."""
    folder.mkdir(parents=True)
    part = folder / "part-1000000000000000000-00000.parquet"
    pq.write_table(WATCH_SCHEMA.empty_table(), part)
    old = time.time() - days * 86_400
    os.utime(part, (old, old))
    return part


def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path
) -> tuple[list[httpx.Response], list[int]]:
    """Poll until the model is ready; returns the answers to predictions sent while it was
    loading, and the server's readiness (`/v2/health/ready`) each time it was not."""
    early: list[httpx.Response] = []
    health: list[int] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vidrec serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            server_ready = httpx.get(f"{url}/v2/health/ready", timeout=2).status_code
            if httpx.get(f"{url}/v2/models/vidrec/ready", timeout=2).status_code == 200:
                return early, health
            health.append(server_ready)  # asked before the model was: it must say not ready
            body = {"instances": [{"user_id": 1}]}
            r = httpx.post(f"{url}/v1/models/vidrec:predict", json=body, timeout=5)
            if r.status_code == 200:  # became ready between the two calls
                return early, health
            early.append(r)
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"vidrec serve not ready in 240 s:\n{log.read_text()[-3000:]}")
