"""Loopback ports for the servers this project starts on one machine (demo, tests, benches).

Prometheus, etcd and the Kubernetes API server cannot listen on port 0 and tell us which
port they got, so a port is picked first and handed to them. A port the kernel hands out
for `bind(0)` comes from its ephemeral range, the same range every outgoing connection
(Ray opens hundreds) takes its local port from: one may take it before the server binds.
So ports come from below that range and above Ray's worker ports, and one process never
gets the same port twice (two picks in a row used to be able to return the same one).
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

from vidrec.errors import Conflict

RAY_WORKER_PORTS_END = 19_999  # ray.init's default max_worker_port
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()


def ephemeral_start(path: Path = _EPHEMERAL) -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unknown)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def candidates(start: int, end: int, seed: int) -> list[int]:
    """Every port in [start, end) once, beginning at a place that depends on `seed` (the
    process id) so that processes picking at once try different ports first."""
    span = end - start
    first = (seed * 7_919) % span  # 7919 is prime: pids spread over the span
    return [start + (first + i) % span for i in range(span)]


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that binds now and that this process has not been given before."""
    low, high = RAY_WORKER_PORTS_END + 1, ephemeral_start()
    pool = candidates(low, high, os.getpid()) if high - low >= 1_000 else []
    for port in itertools.chain((p for p in pool if p not in _given), [0]):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue  # in use: the next one
            got = int(s.getsockname()[1])
        if got not in _given:
            _given.add(got)
            return got
    raise OSError(f"no free port on {host}")


def ensure_free(host: str, port: int, option: str) -> None:
    """Refuse a port that something already listens on (409 naming `option`), before
    starting the work that would fail to bind it later."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            s.bind((host, port))
        except OSError as exc:
            raise Conflict(
                f"{option} {port}: cannot listen on {host}:{port}: {exc.strerror or exc}",
                key=option,
                port=port,
            ) from exc
