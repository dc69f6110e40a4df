"""Run a pipeline: resolve each step's inputs, execute it, record what it saw and made.

`<run_dir>/run.json` is rewritten after every step, so a failed or running
run shows how far it got; each step's record holds its resolved inputs, its
outputs, its wall time and where it ran.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidrec.errors import InvalidInput
from vidrec.pipeline.definition import Pipeline
from vidrec.pipeline.executor import Executor, LocalExecutor


def resolve(ref: str, params: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> Any:
    source, _, key = ref.lstrip("$").partition(".")
    table = params if source == "params" else outputs[source]
    if not key:
        return table
    if key not in table:
        raise KeyError(f"{ref}: {source} has no {key!r} (has {sorted(table)})")
    return table[key]


def run(
    pipeline: Pipeline,
    ctx: Any,
    params: dict[str, Any],
    run_dir: Path,
    executor: Executor | None = None,
    until: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    names = [s.name for s in pipeline.steps]
    if until is not None and until not in names:  # a typo ran every step, registration too
        raise InvalidInput(f"--until: {pipeline.name} has no step {until!r}; its steps: "
                           f"{', '.join(names)}", key="until")  # fmt: skip
    executor = executor or LocalExecutor()
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "pipeline": pipeline.name,
        "run_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
        "run_dir": str(run_dir),
        "executor": executor.kind,
        "params": params,
        "steps": [],
        "status": "running",
    }
    outputs: dict[str, dict[str, Any]] = {}
    t_run = time.perf_counter()
    try:
        for step in pipeline.steps:
            if on_step:
                on_step(step.name)
            inputs = {k: resolve(v, params, outputs) for k, v in step.inputs.items()}
            entry: dict[str, Any] = {"name": step.name, "fn": step.fn, "inputs": inputs}
            record["steps"].append(entry)
            t0 = time.perf_counter()
            outputs[step.name] = executor.run(step, ctx, inputs)
            entry.update(
                outputs=outputs[step.name], seconds=round(time.perf_counter() - t0, 1), status="ok"
            )
            _write(run_dir, record)
            if step.name == until:
                break
        record["status"] = "ok"
    except BaseException as exc:
        record["status"] = "failed"
        if record["steps"]:
            record["steps"][-1].update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        record["seconds"] = round(time.perf_counter() - t_run, 1)
        _write(run_dir, record)
    return record


def _write(run_dir: Path, record: dict[str, Any]) -> None:
    tmp = run_dir / "run.json.partial"
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(run_dir / "run.json")
