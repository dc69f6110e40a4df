"""Where a step runs: in this process, or as a task on a Ray cluster (`RAY_ADDRESS`)."""

from __future__ import annotations

import os
from typing import Any, Protocol

from vidrec.pipeline.definition import Step


class Executor(Protocol):
    kind: str

    def run(self, step: Step, ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]: ...


def _call(step: Step, ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    return step.function()(ctx, **inputs)


class LocalExecutor:
    kind = "local"

    def run(self, step: Step, ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        return _call(step, ctx, inputs)


def default_executor() -> Executor:
    if os.environ.get("RAY_ADDRESS"):
        from vidrec.pipeline.ray_executor import RayExecutor

        return RayExecutor(os.environ["RAY_ADDRESS"])
    return LocalExecutor()
