"""Ports handed to the servers we start: outside the ephemeral range, never twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vidrec import ports
from vidrec.ports import RAY_WORKER_PORTS_END, candidates, ephemeral_start, free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    got = [free_port() for _ in range(50)]
    assert len(set(got)) == 50
    assert all(RAY_WORKER_PORTS_END < p < ephemeral_start() for p in got)
    for p in got[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # raises if it was not free


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        # the pool's first candidate is the busy port, the next one is free
        monkeypatch.setattr(ports, "candidates", lambda *_: [busy, busy + 1])
        monkeypatch.setattr(ports, "ephemeral_start", lambda: 65_000)
        monkeypatch.setattr(ports, "_given", set())
        assert free_port() == busy + 1


def test_without_room_below_the_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_start", lambda: RAY_WORKER_PORTS_END + 10)
    monkeypatch.setattr(ports, "_given", set())
    assert free_port() >= 1024  # bind(0): the kernel's choice


def test_candidates_cover_the_span_once_from_a_pid_dependent_start() -> None:
    a, b = candidates(20_000, 20_100, 12), candidates(20_000, 20_100, 13)
    assert sorted(a) == list(range(20_000, 20_100)) == sorted(b)
    assert a[0] != b[0]


def test_ephemeral_start_reads_the_kernel_file_or_defaults(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert ephemeral_start(f) == 40_000
    assert ephemeral_start(tmp_path / "missing") == 32_768
    f.write_text("")
    assert ephemeral_start(f) == 32_768


def test_a_taken_port_is_a_conflict_naming_where_it_came_from() -> None:
    from vidrec.errors import Conflict

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(Conflict) as e:
            ports.ensure_free("127.0.0.1", port, "monitoring.monitor_port")
        assert e.value.http_status == 409 and e.value.details["key"] == "monitoring.monitor_port"
        assert f"127.0.0.1:{port}" in e.value.message
    ports.ensure_free("127.0.0.1", port, "--port")  # closed: free again, no error
