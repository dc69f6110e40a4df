"""Shared fixtures: one small simulated platform per test session (seeded)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from k8s_cluster import CRDS, ControlPlane, tools_dir
from vidrec.config import FeatureConfig, sim_config
from vidrec.data.simulate import simulate
from vidrec.ports import free_port


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 days of the small platform: ~100k impressions, built in about a second."""
    out = tmp_path_factory.mktemp("sim") / "small"
    simulate(sim_config("small", {"days": 7}), "none", 11, out)
    return out


@pytest.fixture
def feature_cfg() -> FeatureConfig:
    return FeatureConfig()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: `make test` installs it (Debian package)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver with KServe's CRDs installed, for the whole session."""
    cp = ControlPlane(tmp_path_factory.mktemp("k8s"), tools_dir()).start()
    try:
        cp.apply_crds(sorted((CRDS / "kserve-v0.20.0").glob("*.yaml")))
        yield cp
    finally:
        cp.stop()
