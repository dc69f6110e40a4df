"""The ModelRollout CRD, generated from the rollout's pydantic models, so a policy means
the same in local mode's TOML and in the cluster (same fields, bounds, defaults).

Pydantic writes JSON Schema 2020-12; a CRD wants a structural OpenAPI v3.0 schema: refs
inlined, `nullable` instead of `anyOf [.., null]`, boolean `exclusiveMinimum`, no
`additionalProperties: false` (unknown fields are rejected by the API server's strict
field validation instead, which kubectl asks for by default). What JSON Schema cannot
say (steps rise, a step outlasts the analysis interval) is written as CEL rules, and the
operator validates every spec with the pydantic model again before acting on it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from vidrec.config import COHORTS
from vidrec.rollout.state import Spec

GROUP = "vidrec.io"
VERSION = "v1alpha1"
KIND, PLURAL, SINGULAR = "ModelRollout", "modelrollouts", "modelrollout"

_DROP = {"title", "additionalProperties", "$defs"}

# CEL: what a field-by-field schema cannot express (RolloutPolicy's model validators)
POLICY_RULES = [
    {
        "rule": "self.steps.isSorted() && self.steps.all(w, self.steps.exists_one(v, v == w))",
        "message": "steps must rise (each canary weight above the previous one)",
        "fieldPath": ".steps",
    },
    {
        "rule": "self.step_s >= self.interval_s",
        "message": "step_s must be >= interval_s (a step needs an analysis)",
        "fieldPath": ".step_s",
    },
    {
        "rule": f"self.steps[0] * {COHORTS}.0 / 100.0 >= double(self.analysis.min_cohorts)",
        "message": "steps[0]: the first canary step must hold at least analysis.min_cohorts "
        "user cohorts (1 % of users each)",
        "fieldPath": ".steps",
    },
    {
        "rule": "self.shadow.min_overlap <= self.shadow.max_overlap",
        "message": "shadow.min_overlap must be <= shadow.max_overlap",
        "fieldPath": ".shadow",
    },
]


def openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema as a structural OpenAPI v3.0 schema."""
    schema = model.model_json_schema()
    return _convert(schema, schema.get("$defs", {}))


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return _convert({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    if "anyOf" in node:
        kinds = [k for k in node["anyOf"] if k.get("type") != "null"]
        if len(kinds) == 1 and len(node["anyOf"]) == 2:  # Optional[X]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return {**_convert({**kinds[0], **rest}, defs), "nullable": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {k: _convert(v, defs) for k, v in value.items()}
        else:
            out[key] = _convert(value, defs)
    if out.get("default", ...) is None:
        out.pop("default")  # a null default is the same as no default, and must not be stored
    return out


def spec_schema() -> dict[str, Any]:
    spec = openapi(Spec)
    props = spec["properties"]
    policy = props["policy"]
    policy["x-kubernetes-validations"] = POLICY_RULES
    # RolloutPolicy checks each weight in a validator; here the schema says it per item
    policy["properties"]["steps"]["items"].update(
        minimum=0, exclusiveMinimum=True, maximum=100, exclusiveMaximum=True
    )
    props["champion"]["description"] = (
        "the champion it must beat (set by `vidrec rollout start` from what serves now)"
    )
    spec["required"] = ["version"]
    props["target"] = {
        "type": "object",
        "description": "what the rollout moves traffic on",
        "required": ["inferenceService"],
        "properties": {
            "inferenceService": {"type": "string", "description": "its name (this namespace)"},
            "router": {
                "type": "string",
                "enum": ["app", "kserve"],
                "default": "app",
                "description": "app: serving's own route table (sticky user cohorts, shadow); "
                "kserve: the InferenceService's canaryTrafficPercent (Knative mode; per "
                "request, no shadow phase)",
            },
        },
    }
    spec["required"].append("target")
    return spec


def crd() -> dict[str, Any]:
    columns = [
        ("Version", "string", ".spec.version"),
        ("Champion", "string", ".spec.champion"),
        ("Phase", "string", ".status.phase"),
        ("Weight", "number", ".status.weight"),
        ("Paused", "boolean", ".status.paused"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": [{"name": n, "type": t, "jsonPath": p} for n, t, p in columns],
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "description": "A model version's release: shadow, canary steps with "
                "analysis, then promotion or automatic rollback (vidrec).",
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": spec_schema(),
                    "status": {
                        "type": "object",
                        "description": "written by the operator: phase, weight, the last "
                        "checks, history (vidrec.rollout.state.Status)",
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                },
            }
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["mro"],
                "categories": ["vidrec"],
            },
            "versions": [version],
        },
    }
