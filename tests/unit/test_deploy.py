"""The chart's generated schemas: the ModelRollout CRD is a structural OpenAPI v3.0 schema
with the policy's bounds and defaults, and values.schema.json rejects what the typed
settings reject."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from vidrec.config import COHORTS, RolloutPolicy, Strict
from vidrec.deploy import crd, values
from vidrec.deploy.chart import generate
from vidrec.errors import InvalidInput


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        found = [(path, node)]
        for k, v in node.items():
            found += walk(v, f"{path}/{k}")
        return found
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in walk(v, f"{path}/{i}")]
    return []


def test_the_crd_schema_is_structural_openapi_v3() -> None:
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert not {"$ref", "$defs", "anyOf", "title", "const"} & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), f"{path}: {key} must be a boolean"
        if "properties" in node:
            assert node.get("type") == "object", path


def test_the_crd_keeps_the_policy_bounds_defaults_and_optional_fields() -> None:
    spec = crd.spec_schema()
    policy = spec["properties"]["policy"]["properties"]
    interval = policy["interval_s"]
    assert (interval["minimum"], interval["exclusiveMinimum"]) == (0, True)
    assert interval["default"] == RolloutPolicy().interval_s
    assert policy["steps"]["items"]["maximum"] == 100
    assert policy["steps"]["items"]["exclusiveMaximum"] is True
    assert policy["analysis"]["properties"]["min_cohorts"]["maximum"] == COHORTS
    request = spec["properties"]["request"]
    assert request["nullable"] is True and request["type"] == "object"
    assert set(request["required"]) == {"id", "action", "at"}
    assert "force_promote" in request["properties"]["action"]["enum"]
    assert spec["required"] == ["version", "target"]


def test_every_policy_validator_has_a_cel_rule() -> None:
    rules = crd.spec_schema()["properties"]["policy"]["x-kubernetes-validations"]
    text = " ".join(r["message"] for r in rules)
    for phrase in ("steps must rise", "step_s must be >= interval_s", "min_cohorts", "min_overlap"):
        assert phrase in text


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"image": {"tagg": "x"}}, "tagg"),
        ({"config": {"serving": {"max_per_creatorr": 3}}}, "max_per_creatorr"),
        ({"config": {"rollout": {"policy": {"interval_s": 0}}}}, "interval_s"),
        ({"rollout": {"router": "istio"}}, "istio"),
        ({"serving": {"replicas": 0}}, "replicas"),
    ],
)
def test_the_values_schema_rejects_what_the_settings_reject(
    patch: dict[str, Any], where: str
) -> None:
    schema = values.schema()
    defaults = yaml.safe_load(values.values_yaml())
    jsonschema.Draft202012Validator(schema).validate(defaults)  # the defaults pass
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.Draft202012Validator(schema).validate({**defaults, **patch})
    assert where in str(err.value)


def test_values_yaml_documents_every_key_and_loads_as_the_values() -> None:
    text = values.values_yaml()
    lines = text.splitlines()

    def check(model: Strict, depth: int) -> None:
        for name in type(model).model_fields:
            key = "  " * depth + f"{name}:"
            i = next(i for i, line in enumerate(lines) if line.split(" #")[0].startswith(key))
            assert lines[i - 1].lstrip().startswith("# "), f"{name} has no comment"
            value = getattr(model, name)
            if isinstance(value, Strict) and not isinstance(value, RolloutPolicy):
                check(value, depth + 1)

    check(values.Values(), 0)
    assert values.Values.model_validate(yaml.safe_load(text)) == values.Values()


def test_generate_writes_into_a_chart_only(tmp_path: Path) -> None:
    """`--chart` at a directory that is no chart wrote a chart's files there, and the
    checkout's dashboards copy two levels up (at / for /nonexistent)."""
    with pytest.raises(InvalidInput, match="not a Helm chart"):
        generate(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    chart = tmp_path / "a" / "b" / "chart"
    chart.mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: x\nversion: 0.1.0\n")
    done = generate(chart)
    outside = {k: v for k, v in done.items() if k.startswith("../")}
    assert outside and set(outside.values()) == {"skipped"}
    assert not (tmp_path / "a" / "dashboards").exists()
    assert {v for k, v in done.items() if k not in outside} == {"written"}
    inside = set(done) - set(outside)
    assert generate(chart, check=True) == {**outside, **dict.fromkeys(inside, "unchanged")}
