"""How routes map onto an InferenceService's predictor (pure functions; the API server
round trip is in tests/integration/test_kserve_router.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vidrec.errors import ConfigError, InvalidInput
from vidrec.rollout.kserve_router import CHAMPION, _routes, _with_routes
from vidrec.rollout.traffic_router import Routes

C = "kserve-container"


def isvc(version: str, pct: int | None = None, champion: str | None = None) -> dict[str, Any]:
    pred: dict[str, Any] = {
        "containers": [
            {
                "name": C,
                "env": [
                    {"name": "OTHER", "value": "x"},
                    {"name": "VIDREC_MODEL_VERSION", "value": version},
                ],
            }
        ]
    }
    if pct is not None:
        pred["canaryTrafficPercent"] = pct
    notes = {CHAMPION: champion} if champion else {}
    return {"metadata": {"name": "v", "annotations": notes}, "spec": {"predictor": pred}}


def shape(obj: dict[str, Any]) -> tuple[str, int | None, str | None]:
    pred = obj["spec"]["predictor"]
    env = {e["name"]: e["value"] for e in pred["containers"][0]["env"]}
    return (
        env["VIDREC_MODEL_VERSION"],
        pred.get("canaryTrafficPercent"),
        obj["metadata"]["annotations"].get(CHAMPION),
    )


@pytest.mark.parametrize(
    ("before", "routes", "after"),
    [
        (isvc("1"), Routes("1", "2", 10.0), ("2", 10, "1")),  # a canary starts
        (isvc("2", 10, "1"), Routes("1", "2", 50.0), ("2", 50, "1")),  # a step
        (isvc("2", 50, "1"), Routes("2"), ("2", None, "2")),  # promotion
        (isvc("2", 50, "1"), Routes("1"), ("2", 0, "1")),  # rollback: prev revision, at once
        (isvc("1"), Routes("5"), ("5", None, "5")),  # a plain deploy
    ],
    ids=["start", "step", "promote", "rollback", "deploy"],
)
def test_routes_become_the_predictor_kserve_expects(
    before: dict[str, Any], routes: Routes, after: tuple[str, int | None, str | None]
) -> None:
    out = _with_routes(before, routes, C)
    assert shape(out) == after
    assert _routes(out, C) == Routes(routes.champion, routes.challenger, routes.weight)
    assert before != out and out["spec"]["predictor"]["containers"][0]["env"][0]["name"] == "OTHER"


def test_routes_already_in_place_change_nothing() -> None:
    obj = isvc("2", 10, "1")
    assert _with_routes(obj, Routes("1", "2", 10.0, salt="v2"), C) == obj


@pytest.mark.parametrize(
    ("routes", "error"),
    [(Routes("1", "2", 12.5), "whole percent")],
)
def test_what_kserve_cannot_express_is_refused(routes: Routes, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        _with_routes(isvc("1"), routes, C)


def test_a_predictor_without_the_version_is_a_config_error() -> None:
    obj = isvc("1")
    obj["spec"]["predictor"]["containers"][0]["env"] = []
    with pytest.raises(ConfigError, match="VIDREC_MODEL_VERSION"):
        _routes(obj, C)
