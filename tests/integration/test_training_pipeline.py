"""The training pipeline end to end on the small simulation, with the real MLflow registry:
first run registers a champion, the next a challenger compared with it on the same
validation window; failed gates (champion margin, schema mismatch) register nothing.
Plus the same pipeline's first step as a task on a real local Ray cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidrec.config import GateConfig, RegistryConfig, Settings, TrainConfig
from vidrec.data.schema import TABLES
from vidrec.errors import InvalidInput
from vidrec.features.definitions import FEATURES
from vidrec.ports import free_port
from vidrec.registry.bundle import snapshot_id
from vidrec.registry.registry import open_registry
from vidrec.training import steps
from vidrec.training.run import run_training

pytestmark = pytest.mark.integration
MODELS = {"random", "popularity", "logistic", "lightgbm_naive", "lightgbm_ipw"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("registry")
    train = TrainConfig(
        validation_days=1, test_days=1, retrieval_epochs=2, ranker_rounds=40, eval_requests=150
    )
    return Settings(train=train, registry=RegistryConfig(root=root))


@pytest.fixture(scope="module")
def first(small_sim: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    run_dir = tmp_path_factory.mktemp("run1")
    return run_training(settings, small_sim, run_dir=run_dir), run_dir


def test_first_run_registers_a_champion_bundle(
    first: Any, settings: Settings, small_sim: Path
) -> None:
    summary, run_dir = first
    assert summary["status"] == "ok" and summary["gates_passed"], summary["gates"]
    assert summary["registered"] and summary["alias"] == "champion"
    info = open_registry(settings.registry).get("champion")
    assert info.version == summary["version"]
    m = info.manifest
    assert m.schema_hash == FEATURES.schema_hash()
    assert m.data_snapshot_id == snapshot_id(small_sim)
    assert m.training_window[1] <= m.validation_window[0]
    assert (
        m.metrics["validation.ips_ctr_top1"]
        == summary["validation"]["lightgbm_ipw"]["ips_ctr_top1"]
    )
    for f in ("ranker/model.txt", "retrieval/towers.pt", "retrieval/index/index.faiss"):
        assert f in m.files
    assert {"fallback/popularity.json", "retrieval/index/items.parquet"} <= set(m.files)
    ref = json.loads((Path(summary["bundle"]) / "reference" / "features.json").read_text())
    assert set(ref["features"]) == set(FEATURES.model_inputs)
    edges = ref["features"]["video_ctr_7d"]["edges"]
    assert edges == sorted(edges) and len(edges) >= 5
    assert "log-Q" in (Path(summary["bundle"]) / "MODEL_CARD.md").read_text()
    # the serving reference: six blocks, each served as of its own time of day, in all
    serving = json.loads((Path(summary["bundle"]) / "reference" / "serving.json").read_text())
    blocks = serving["blocks"]
    assert len(blocks["hours"]) == 6 and set(np.diff(sorted(blocks["hours"]))) == {4}
    assert max(blocks["requests"]) <= settings.train.reference_requests
    assert sum(blocks["requests"]) == serving["requests"]
    per_block = np.asarray(blocks["features"]["user_watches_1d"]["counts"])
    assert per_block.sum(axis=0).tolist() == serving["features"]["user_watches_1d"]["counts"]
    assert len(serving["request_inputs"]["blocks"]) == len(serving["request_inputs"]["values"])
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["steps"][0]["name"] == "build_dataset"
    assert all(s["status"] == "ok" and "inputs" in s and "outputs" in s for s in rec["steps"])


def test_report_compares_every_model_on_every_view(first: Any) -> None:
    summary, _ = first
    report = json.loads(Path(summary["report"]).read_text())
    test = report["test"]
    assert set(test["slates"]) == MODELS
    assert set(test["candidates"]["models"]) == MODELS
    for m in test["candidates"]["models"].values():
        assert {"ndcg10_true", "ndcg20_true", "ndcg20_true_cold_users"} <= set(m)
    r = test["retrieval"]
    assert set(r) == {"two_tower_ann", "two_tower_exact", "popularity"}
    assert r["two_tower_ann"]["overlap500_vs_exact"] > 0.9
    # fresh videos have few clicks: popularity hardly retrieves them, content embeddings can
    assert r["two_tower_ann"]["recall500_fresh"] > r["popularity"]["recall500_fresh"] + 0.3
    cand = test["candidates"]["models"]
    assert cand["lightgbm_ipw"]["ndcg20_true"] > cand["random"]["ndcg20_true"]
    assert Path(summary["plot"]).stat().st_size > 20_000
    assert "disagree" in report["note"]


def test_second_run_is_a_challenger_scored_against_the_champion(
    first: Any, settings: Settings, small_sim: Path, tmp_path: Path
) -> None:
    s2 = run_training(settings, small_sim, run_dir=tmp_path / "run2")
    champ = next(g for g in s2["gates"] if g["name"] == "beats_champion")
    assert "no champion" not in champ["message"] and champ["passed"]
    assert s2["registered"] and s2["alias"] == "challenger"
    reg = open_registry(settings.registry)
    assert reg.get("challenger").version == s2["version"] == first[0]["version"] + 1
    assert reg.get("champion").version == first[0]["version"]


def gate_inputs(run_dir: Path) -> dict[str, Any]:
    rec = {s["name"]: s for s in json.loads((run_dir / "run.json").read_text())["steps"]}
    return {k: v for k, v in rec["gate"]["inputs"].items()}, rec


def test_failed_gates_say_which_and_by_how_much_and_register_nothing(
    first: Any, settings: Settings
) -> None:
    _, run_dir = first
    inputs, rec = gate_inputs(run_dir)
    strict = settings.model_copy(update={"gates": GateConfig(min_gain_over_champion=0.05)})
    ctx = steps.Context(run_dir / "retry", strict)
    champion = dict(inputs["validation"][inputs["chosen"]])
    g = steps.gate(ctx, **{**inputs, "champion_validation": champion})
    assert not g["passed"]
    failed = [x for x in g["gate_report"]["gates"] if not x["passed"]]
    assert [x["name"] for x in failed] == ["beats_champion"]
    assert "below" in failed[0]["message"] and "0.050" in failed[0]["message"]

    bad_schema = steps.gate(ctx, **{**inputs, "schema_hash": "0000deadbeef"})
    schema = next(x for x in bad_schema["gate_report"]["gates"] if x["name"] == "schema")
    assert not schema["passed"] and "0000deadbeef" in schema["message"]

    before = len(open_registry(settings.registry).versions())
    r = steps.register(
        ctx,
        rec["build_dataset"]["outputs"],
        rec["register"]["inputs"]["retrieval"],
        rec["register"]["inputs"]["index"],
        rec["register"]["inputs"]["ranker"],
        inputs["validation"],
        inputs["chosen"],
        bad_schema["gate_report"],
        rec["register"]["inputs"]["serving_reference"],
    )
    assert r["registered"] is False and any(f.startswith("schema:") for f in r["failed"])
    assert len(open_registry(settings.registry).versions()) == before


@pytest.fixture(scope="module")
def ray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home without ~/.ray/auth_token: a token left there by another Ray user switches the
    cluster to token auth and the driver is refused."""
    return tmp_path_factory.mktemp("ray-home")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, ray_home: Path) -> Iterator[str]:
    """A real single-node Ray cluster on loopback, as `ray start --head` makes it."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray, "the ray CLI comes with ray[serve] in the venv"
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "HOME": str(ray_home)}
    subprocess.run(
        [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"],
        check=True, capture_output=True, timeout=120, env=env,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=60, env=env)


def test_steps_run_as_ray_tasks_when_ray_address_is_set(
    ray_cluster: str,
    ray_home: Path,
    small_sim: Path,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    monkeypatch.setenv("HOME", str(ray_home))
    os.environ["RAY_ADDRESS"] = ray_cluster
    try:
        s = run_training(settings, small_sim, run_dir=tmp_path, until="build_dataset")
    finally:
        del os.environ["RAY_ADDRESS"]
        ray.shutdown()
    assert s["executor"] == "ray" and s["status"] == "ok"
    rec = json.loads((tmp_path / "run.json").read_text())
    out = rec["steps"][0]["outputs"]
    assert "_host" in out and Path(out["training_set"]).exists()


def test_a_training_window_without_clicks_is_an_error_naming_it(
    small_sim: Path, settings: Settings, tmp_path: Path
) -> None:
    """Watches that name no request label no impression: said when the data is built, not as
    a solver's traceback from the ranker three steps on."""
    data = tmp_path / "log"
    shutil.copytree(small_sim, data, ignore=shutil.ignore_patterns("oracle"))
    watches = pq.read_table(data / "watches.parquet")
    column = watches.schema.get_field_index("request_id")
    nulls = pa.nulls(watches.num_rows, pa.int64())
    pq.write_table(watches.set_column(column, "request_id", nulls), data / "watches.parquet")
    with pytest.raises(InvalidInput, match=r"training window .* 0 clicks"):
        run_training(settings, data, run_dir=tmp_path / "run", until="train_retrieval")


@pytest.mark.parametrize("clicked", [False, True])
def test_rows_on_another_clock_are_an_error_that_says_so(
    small_sim: Path, settings: Settings, tmp_path: Path, clicked: bool
) -> None:
    """A request sent without context.ts is timed by the server's clock, a replay by the
    simulation's: ingested together, the few wall-clock rows became the log's newest facts,
    the last windows held nothing else, and evaluation failed with numpy's traceback.
    Unclicked, they are label-pending; clicked (labels settled), they fill the test window
    alone and leave validation empty."""
    data = tmp_path / "log"
    shutil.copytree(small_sim, data)
    for table in ("impressions", "watches"):
        (data / table).mkdir()
        (data / f"{table}.parquet").rename(data / table / f"{table}.parquet")
    n = 4 if clicked else 3  # clicked: a 4th, 2 days on, settles the labels of the 3
    imp = pq.read_table(data / "impressions" / "impressions.parquet").slice(0, n)
    ts = np.asarray(pq.read_table(data / "impressions", columns=["ts"]).column("ts")).max()
    later = ts + 300 * 86_400 + np.array([0, 1, 2, 2 * 86_400])[:n]
    ids = np.arange(n) + 10**15
    late = imp.set_column(imp.schema.get_field_index("ts"), "ts", pa.array(later))
    late = late.set_column(late.schema.get_field_index("request_id"), "request_id", pa.array(ids))
    pq.write_table(late, data / "impressions" / "log-part-1.parquet")
    if clicked:
        late = late.slice(0, 3)
        watched = {"request_id": ids[:3], "user_id": late.column("user_id"),
                   "video_id": late.column("video_id"), "position": late.column("position"),
                   "start_ts": later[:3] + 1, "watch_seconds": np.full(3, 30.0),
                   "label_ts": later[:3] + 31}  # fmt: skip
        schema = pq.read_schema(data / "watches" / "watches.parquet")
        watches = pa.table(watched).select(schema.names).cast(schema)
        pq.write_table(watches, data / "watches" / "log-part-1.parquet")
        says = r"validation window .* 0 impressions .* jump by 300 days .* 3 rows follow"
    else:
        says = r"newest fact .* is 300 days after its newest impression with a settled label"
    with pytest.raises(InvalidInput, match=says + r".* another clock"):
        run_training(settings, data, run_dir=tmp_path / "run", until="build_dataset")


def test_a_log_without_an_oracle_gets_the_operator_views_only(
    small_sim: Path, settings: Settings, tmp_path: Path
) -> None:
    """Any log in the documented schema trains: no oracle, no true-relevance metrics; only
    the required columns, each table a directory of parts (as the serving log writes)."""
    data = tmp_path / "log"
    for table in TABLES.values():
        frame = pq.read_table(small_sim / f"{table.name}.parquet", columns=list(table.required))
        (data / table.name).mkdir(parents=True)
        half = frame.num_rows // 2
        pq.write_table(frame.slice(0, half), data / table.name / "part-0.parquet")
        pq.write_table(frame.slice(half), data / table.name / "part-1.parquet")
    s = run_training(settings, data, run_dir=tmp_path / "run", until="evaluate")
    assert s["status"] == "ok"
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    built = next(x["outputs"] for x in record["steps"] if x["name"] == "build_dataset")
    assert built["rejected_total"] == 0 and built["positives"] > 0
    report = json.loads(Path(s["report"]).read_text())["test"]
    assert report["candidates"] == {}
    assert all("ndcg10_true" not in m and "ips_ctr_top1" in m for m in report["slates"].values())
    assert all(set(m) >= {"recall500_clicks"} for m in report["retrieval"].values())
    assert not any("true" in k for m in report["retrieval"].values() for k in m)
