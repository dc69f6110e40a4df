"""A pipeline definition: named steps, each a function and where its inputs come from.

Validated when loaded, before anything runs: an unknown step reference, a
function that does not import, or a step used before it runs is an error
naming the step and the input.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from vidrec.config import Strict, parse
from vidrec.errors import ConfigError

# the checkout's pipelines/; an installed package (the image) is told where they are
PIPELINES = Path(
    os.environ.get("VIDREC_PIPELINES") or Path(__file__).resolve().parents[3] / "pipelines"
)


class Step(Strict):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    fn: str = Field(pattern=r"^[\w.]+:\w+$", description="module:function")
    inputs: dict[str, str] = Field(default_factory=dict)

    def function(self) -> Callable[..., dict[str, Any]]:
        module, name = self.fn.split(":")
        try:
            fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"step {self.name}: cannot import {self.fn}: {exc}") from exc
        return fn


class Pipeline(Strict):
    name: str
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Pipeline:
        seen: set[str] = set()
        for step in self.steps:
            for key, ref in step.inputs.items():
                source = ref.lstrip("$").split(".")[0]
                if not ref.startswith("$") or (source != "params" and source not in seen):
                    raise ValueError(
                        f"step {step.name}: input {key} = {ref!r} must be $params.NAME or "
                        f"$STEP[.NAME] of an earlier step"
                    )
            seen.add(step.name)
        return self


def load(name_or_path: str) -> Pipeline:
    """`training` -> pipelines/training.yaml; any other value is a path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PIPELINES / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"pipeline definition not found: {path}", file=str(path))
    pipeline = parse(Pipeline, yaml.safe_load(path.read_text()), str(path))
    for step in pipeline.steps:
        step.function()
    return pipeline
