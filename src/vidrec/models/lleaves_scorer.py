"""The fast scorer: the LightGBM model compiled to machine code by lleaves.

Compiling takes seconds to minutes (about 20 s for 200 trees of 63 leaves), so
the object code is cached per model and per host, under
`$VIDREC_CACHE/lleaves/<key>/model.o` (default `~/.cache/vidrec`). The key
hashes the model bytes, the lleaves and llvmlite versions and the host CPU: the
code is compiled for this CPU's instruction set, and a cache shared with
another machine must never hand it code it cannot run. lleaves trusts any
file at its cache path, so we compile into a private temporary directory and
rename the finished file into place: concurrent processes either find no file
or a whole one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

CACHE_FORMAT = 1  # bump when the compile options below change


@dataclass
class LleavesScorer:
    model: Any = field(repr=False)  # lleaves.Model, compiled
    cache_file: Path
    compile_seconds: float | None  # None: loaded from the cache
    kind: str = "lleaves"

    @classmethod
    def load(cls, model_txt: Path, cache_dir: Path | None = None) -> LleavesScorer:
        import lleaves  # imported here: it pulls in LLVM, which the fallback never needs

        cached = cache_path(model_txt, cache_dir)
        started = time.perf_counter()
        compiled = not cached.exists()
        if compiled:
            _compile_into(model_txt, cached)
        model = lleaves.Model(model_file=str(model_txt))
        model.compile(cache=str(cached))  # a cache hit: loads the object code, no compile
        seconds = time.perf_counter() - started
        return cls(model, cached, seconds if compiled else None)

    @property
    def num_features(self) -> int:
        return int(self.model.num_feature())

    def score(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        # lleaves applies the binary objective's sigmoid itself, as LightGBM does;
        # one thread: a request is one small batch, threads only add hand-off latency
        rows = np.ascontiguousarray(x, dtype=np.float64)
        return np.asarray(self.model.predict(rows, n_jobs=1))


def cache_root() -> Path:
    return Path(os.environ.get("VIDREC_CACHE", Path.home() / ".cache" / "vidrec")) / "lleaves"


def cache_path(model_txt: Path, cache_dir: Path | None = None) -> Path:
    return (cache_dir or cache_root()) / _cache_key(Path(model_txt).read_bytes()) / "model.o"


def _cache_key(model_bytes: bytes) -> str:
    import llvmlite.binding as llvm

    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot detect them on some hosts; lleaves then uses none
        features = ""
    host = f"{llvm.get_host_cpu_name()}|{features}"
    h = hashlib.sha256(model_bytes)
    for part in (_version("lleaves"), _version("llvmlite"), host, str(CACHE_FORMAT)):
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def _version(package: str) -> str:
    return importlib.metadata.version(package)


def _compile_into(model_txt: Path, target: Path) -> None:
    """Compile to a file in a fresh directory beside `target`, then rename it into place."""
    import lleaves

    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".compile-", dir=target.parent))
    try:
        # a path that does not exist yet: lleaves would load an existing (empty) file as code
        partial = workdir / target.name
        lleaves.Model(model_file=str(model_txt)).compile(cache=str(partial))
        os.replace(partial, target)  # atomic; a concurrent compile of the same key just wins
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
