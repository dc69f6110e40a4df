"""Run each step as a Ray task on the cluster at `RAY_ADDRESS`.

Steps exchange paths, so the cluster's workers must see the run directory
(one machine, or a shared volume in Kubernetes). One CPU per step: steps are
sequential, and on a 2-core machine a whole-core request still schedules.
"""

from __future__ import annotations

import logging
from typing import Any

from vidrec.pipeline.definition import Step


def _remote_call(step: Step, ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    import socket

    out = step.function()(ctx, **inputs)
    return {**out, "_host": socket.gethostname()}


class RayExecutor:
    kind = "ray"

    def __init__(self, address: str, num_cpus: float = 1.0) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        self._task = ray.remote(num_cpus=num_cpus)(_remote_call)
        self.address = address

    def run(self, step: Step, ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        import ray

        out: dict[str, Any] = ray.get(self._task.remote(step, ctx, inputs))
        return out
