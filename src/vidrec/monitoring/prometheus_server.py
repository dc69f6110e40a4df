"""Run the real Prometheus binary as a child process (local runs and integration tests).

In a cluster Prometheus is deployed by its own chart; this module only exists so the same
generated config and rules can be exercised on one machine. It never changes the config
it is given, and always stops the process it started.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from vidrec.errors import ConfigError, NotFound, NotReady
from vidrec.ports import free_port

_LOG = "prometheus.log"


class PrometheusProcess:
    """`with PrometheusProcess(config, data_dir) as prom:` serves on `prom.url` until exit."""

    def __init__(
        self,
        config_file: Path,
        data_dir: Path,
        *,
        port: int | None = None,
        retention: str = "2h",
        start_timeout_s: float = 30.0,
    ) -> None:
        self.config_file = config_file
        self.data_dir = data_dir
        # Prometheus cannot listen on port 0 and report it, so pick a free one first.
        self.port = port or free_port()
        self.retention = retention
        self.start_timeout_s = start_timeout_s
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = data_dir / _LOG
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> PrometheusProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            self._command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _command(self) -> list[str]:
        exe = shutil.which("prometheus")
        if exe is None:
            raise NotFound(
                "the prometheus binary is not on PATH: run `make sysdeps` "
                "(installs the Debian package prometheus)"
            )
        return [
            exe,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",  # POST /-/reload
        ]

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.1)
        code = self._proc.poll()
        waited = f"not ready in {self.start_timeout_s:g}s"
        state = f"exited ({code})" if code is not None else waited
        raise NotReady(
            f"prometheus on {self.url} {state}; last lines of {self.log_file}:\n{self.log_tail()}",
            url=self.url,
            log=str(self.log_file),
        )

    def reload(self) -> None:
        """Re-read the config and rule files (after rewriting them)."""
        try:
            resp = httpx.post(f"{self.url}/-/reload", timeout=10.0)
        except httpx.HTTPError as exc:
            raise NotReady(f"prometheus at {self.url} is unreachable: {exc}") from exc
        if resp.status_code != 200:
            # Prometheus keeps the old config and answers why the new one failed.
            raise ConfigError(
                f"prometheus rejected {self.config_file}: {resp.text.strip()}",
                file=str(self.config_file),
            )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
