"""Pipeline definitions are checked when loaded, before any step runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidrec.errors import ConfigError, InvalidInput
from vidrec.pipeline import definition, runner
from vidrec.pipeline.executor import LocalExecutor


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return str(p)


def test_the_shipped_training_pipeline_loads() -> None:
    p = definition.load("training")
    names = [s.name for s in p.steps]
    assert names[0] == "build_dataset" and names[-1] == "register"
    assert {"train_retrieval", "build_index", "train_ranker", "evaluate", "gate"} <= set(names)


def test_a_reference_to_a_later_step_is_refused(tmp_path: Path) -> None:
    text = """
name: bad
steps:
  - {name: a, fn: "vidrec.training.steps:gate", inputs: {x: $b.y}}
  - {name: b, fn: "vidrec.training.steps:gate"}
"""
    with pytest.raises(ConfigError, match=r"p.yaml: .*step a: input x = .\$b.y. must be"):
        definition.load(write(tmp_path, text))


def test_an_unimportable_function_is_named(tmp_path: Path) -> None:
    text = "name: bad\nsteps:\n  - {name: a, fn: 'vidrec.nope:run'}\n"
    with pytest.raises(ConfigError, match=r"step a: cannot import vidrec\.nope:run"):
        definition.load(write(tmp_path, text))


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    text = "name: bad\nsteps:\n  - {name: a, fn: 'vidrec.training.steps:gate', retries: 3}\n"
    with pytest.raises(ConfigError, match="retries"):
        definition.load(write(tmp_path, text))


def double(ctx: object, x: int) -> dict[str, int]:
    return {"y": 2 * x}


def fail(ctx: object, y: int) -> dict[str, int]:
    raise RuntimeError(f"boom {y}")


def test_the_runner_records_inputs_outputs_and_the_failing_step(tmp_path: Path) -> None:
    import json
    import sys

    sys.modules.setdefault("vidrec_test_steps", sys.modules[__name__])
    p = definition.Pipeline(
        name="t",
        steps=[
            definition.Step(name="a", fn="vidrec_test_steps:double", inputs={"x": "$params.x"}),
            definition.Step(name="b", fn="vidrec_test_steps:double", inputs={"x": "$a.y"}),
            definition.Step(name="c", fn="vidrec_test_steps:fail", inputs={"y": "$b.y"}),
        ],
    )
    with pytest.raises(RuntimeError, match="boom 12"):
        runner.run(p, None, {"x": 3}, tmp_path, LocalExecutor())
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["status"] == "failed"
    assert [s["status"] for s in rec["steps"]] == ["ok", "ok", "failed"]
    assert rec["steps"][1]["inputs"] == {"x": 6} and rec["steps"][1]["outputs"] == {"y": 12}
    assert "boom 12" in rec["steps"][2]["error"]
    done = runner.run(p, None, {"x": 3}, tmp_path / "r2", LocalExecutor(), until="b")
    assert done["status"] == "ok" and len(done["steps"]) == 2
    # a step that does not exist ran every step (the training pipeline's registration too)
    with pytest.raises(InvalidInput, match="--until: t has no step 'bb'; its steps: a, b, c"):
        runner.run(p, None, {"x": 3}, tmp_path / "r3", LocalExecutor(), until="bb")
    assert not (tmp_path / "r3").exists()
