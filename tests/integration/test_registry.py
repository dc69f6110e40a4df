"""The model registry on a real MLflow (SQLite + local artifacts), and the bundle checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from vidrec.config import GateConfig, RegistryConfig
from vidrec.data.compact import compact
from vidrec.errors import InvalidInput, NotFound, SchemaError
from vidrec.registry.bundle import (
    Manifest,
    bundle_files,
    git_sha,
    read_manifest,
    snapshot_id,
    write_manifest,
)
from vidrec.registry.gates import GateFailed, GateReport, check_gates
from vidrec.registry.mlflow_registry import MlflowRegistry

pytestmark = pytest.mark.integration

M = GateConfig().metric  # the default gate metric
BASELINES = {"popularity": {M: 0.70}, "logistic": {M: 0.65}}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture
def registry(root: Path, request: pytest.FixtureRequest) -> MlflowRegistry:
    # one database per module (a new one costs seconds of migrations); one model per test
    return MlflowRegistry(RegistryConfig(root=root, model_name=f"vidrec-{request.node.name}"))


def make_bundle(where: Path, payload: bytes, ndcg: float = 0.72) -> Path:
    b = where / "bundle"
    (b / "ranker").mkdir(parents=True)
    (b / "retrieval").mkdir()
    (b / "ranker" / "model.txt").write_bytes(payload)
    (b / "retrieval" / "items.bin").write_bytes(bytes(range(256)) * 4)
    m = Manifest(
        model_name="vidrec",
        feature_set="v1",
        schema_hash="h-abc",
        training_window=(0, 100),
        validation_window=(200, 300),
        data_snapshot_id="sha256:0123456789abcdef",
        git_sha="abc123",
        created_at=int(time.time()),
        metrics={M: ndcg, "auc": 0.8},
        files=bundle_files(b),
    )
    write_manifest(b, m)
    return b


def report(ndcg: float = 0.72) -> GateReport:
    return check_gates(GateConfig(), {M: ndcg}, BASELINES, None, 0, "h-abc", "h-abc")


@pytest.fixture
def two_versions(registry: MlflowRegistry, tmp_path: Path) -> tuple[Path, Path]:
    """Version 1 is champion, version 2 challenger."""
    b1 = make_bundle(tmp_path / "one", b"model one\n")
    b2 = make_bundle(tmp_path / "two", b"model two\n", ndcg=0.74)
    v1 = registry.register(b1, report(), alias="champion")
    v2 = registry.register(b2, report(0.74), alias="challenger")
    assert (v1.version, v1.aliases) == (1, ["champion"])
    assert (v2.version, v2.aliases) == (2, ["challenger"])
    return b1, b2


def test_versions_found_by_alias_or_number(
    registry: MlflowRegistry, two_versions: tuple[Path, Path]
) -> None:
    _, b2 = two_versions
    assert registry.get("champion").version == 1
    assert registry.get("challenger").version == 2
    v2 = registry.get("2")
    assert v2.manifest == read_manifest(b2) and v2.manifest.metrics[M] == 0.74
    assert v2.source.endswith("/bundle")
    assert abs(v2.created_at - time.time()) < 120
    assert v2.tags["schema_hash"] == "h-abc"
    assert v2.tags["data_snapshot_id"] == "sha256:0123456789abcdef"
    assert v2.tags["git_sha"] == "abc123"
    assert json.loads(v2.tags["training_window"]) == [0, 100]
    assert json.loads(v2.tags["gate_report"]) == report(0.74).to_dict()
    assert [v.version for v in registry.versions()] == [1, 2]
    assert [v.aliases for v in registry.versions()] == [["champion"], ["challenger"]]


def test_run_holds_metrics_and_params(
    registry: MlflowRegistry, two_versions: tuple[Path, Path]
) -> None:
    v1 = registry.get("1")
    run = registry.client.get_run(registry.client.get_model_version(registry.name, "1").run_id)
    assert run.data.metrics[M] == 0.72
    assert run.data.params["schema_hash"] == "h-abc"
    assert run.data.params["training_window"] == "[0, 100]"
    assert run.data.tags["mlflow.source.git.commit"] == v1.manifest.git_sha


def test_download_round_trips_the_bytes(
    registry: MlflowRegistry, two_versions: tuple[Path, Path], tmp_path: Path
) -> None:
    _, b2 = two_versions
    cache = tmp_path / "cache"
    got = registry.download("challenger", cache)
    assert bundle_files(got) == bundle_files(b2)
    for rel in [*bundle_files(b2), "manifest.json"]:
        assert (got / rel).read_bytes() == (b2 / rel).read_bytes(), rel
    assert registry.download("2", cache) == got  # downloaded once, reused
    got1 = registry.download("champion", cache)
    assert got1 != got and (got1 / "ranker/model.txt").read_bytes() == b"model one\n"


def test_set_alias_moves_champion(
    registry: MlflowRegistry, two_versions: tuple[Path, Path]
) -> None:
    registry.set_alias("champion", 2)
    assert registry.get("champion").version == 2
    assert registry.get("1").aliases == []
    assert registry.get("2").aliases == ["challenger", "champion"]


def test_failed_gates_register_nothing(
    registry: MlflowRegistry, two_versions: tuple[Path, Path], tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=registry.uri)
    exp = client.get_experiment_by_name(registry.cfg.experiment)
    assert exp is not None
    runs_before = len(client.search_runs([exp.experiment_id]))
    bad = make_bundle(tmp_path / "bad", b"worse model\n", ndcg=0.69)
    with pytest.raises(GateFailed, match=r"beats_popularity: .* 0\.010 below popularity") as exc:
        registry.register(bad, report(0.69), alias="challenger")
    assert exc.value.http_status == 422
    assert [v.version for v in registry.versions()] == [1, 2]
    assert registry.get("challenger").version == 2
    assert len(client.search_runs([exp.experiment_id])) == runs_before


def test_unknown_alias_or_version_is_404(registry: MlflowRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no version has alias 'champion'") as exc:
        registry.get("champion")  # nothing registered yet
    assert exc.value.http_status == 404
    assert registry.versions() == []
    registry.register(make_bundle(tmp_path, b"m\n"), report())
    with pytest.raises(NotFound, match=r"alias 'challenger' \(aliases: none\)"):
        registry.get("challenger")
    with pytest.raises(NotFound, match="no version 7"):
        registry.get("7")
    with pytest.raises(NotFound):
        registry.download("champion", tmp_path / "dl")
    with pytest.raises(NotFound):
        registry.set_alias("champion", 7)


def test_bad_alias_name_is_400(registry: MlflowRegistry, tmp_path: Path) -> None:
    b = make_bundle(tmp_path, b"m\n")
    with pytest.raises(InvalidInput, match="alias 'prod' is not one of champion, challenger") as e:
        registry.register(b, report(), alias="prod")
    assert e.value.http_status == 400
    assert registry.versions() == []
    registry.register(b, report())
    with pytest.raises(InvalidInput, match="'prod'"):
        registry.set_alias("prod", 1)


def test_a_database_that_is_not_one_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").write_bytes(b"a text file where the registry was\n")
    with pytest.raises(InvalidInput, match=r"mlflow\.db: not a database MLflow can use") as e:
        MlflowRegistry(RegistryConfig(root=tmp_path))
    assert e.value.details == {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def test_tags_for_rollout(registry: MlflowRegistry, tmp_path: Path) -> None:
    registry.register(make_bundle(tmp_path, b"m\n"), report())
    registry.tag(1, "rolled_back", "true")
    assert registry.get("1").tags["rolled_back"] == "true"
    with pytest.raises(InvalidInput, match="written by the registry"):
        registry.tag(1, "gate_report", "{}")
    with pytest.raises(NotFound):
        registry.tag(3, "rolled_back", "true")


def test_manifest_listing_a_missing_file_is_refused(
    registry: MlflowRegistry, tmp_path: Path
) -> None:
    b = make_bundle(tmp_path, b"m\n")
    (b / "ranker" / "model.txt").unlink()
    with pytest.raises(SchemaError, match=r"manifest\.json: .*missing.*ranker/model\.txt") as exc:
        registry.register(b, report())
    assert exc.value.http_status == 422
    assert registry.versions() == []


def test_missing_or_invalid_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"manifest\.json: not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 1}')
    with pytest.raises(SchemaError, match=r"manifest\.json: model_name: Field required"):
        read_manifest(tmp_path)
    b = make_bundle(tmp_path / "x", b"m\n")
    m = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({**m, "training_window": [0, 250]}))
    with pytest.raises(SchemaError, match="ends at 250, after validation starts at 200"):
        read_manifest(b)
    (b / "manifest.json").write_text(json.dumps({**m, "files": ["../etc/passwd"]}))
    with pytest.raises(SchemaError, match="not a bundle-relative file path"):
        read_manifest(b)


def test_two_registries_in_one_process_stay_apart(registry: MlflowRegistry, tmp_path: Path) -> None:
    other = MlflowRegistry(RegistryConfig(root=tmp_path / "other", model_name=registry.name))
    registry.register(make_bundle(tmp_path / "a", b"a\n"), report(), alias="champion")
    other.register(make_bundle(tmp_path / "b", b"b\n"), report(), alias="champion")
    other.register(make_bundle(tmp_path / "c", b"c\n"), report(), alias="challenger")
    assert [v.version for v in registry.versions()] == [1]
    assert [v.version for v in other.versions()] == [1, 2]
    got = other.download("champion", tmp_path / "dl")
    assert (got / "ranker/model.txt").read_bytes() == b"b\n"
    assert str(tmp_path / "other") in other.get("1").source


def test_snapshot_id_is_stable_and_sensitive_to_one_byte(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "watches").mkdir(parents=True)
    (data / "users.parquet").write_bytes(bytes(range(256)) * 5000)  # > 1 MiB: several chunks
    (data / "watches" / "part-0.parquet").write_bytes(b"watch rows")
    first = snapshot_id(data)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    assert snapshot_id(data) == first
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert snapshot_id(copy) == first  # content id, not a path id

    blob = bytearray((copy / "users.parquet").read_bytes())
    blob[1_200_000] ^= 1  # one bit, in the second chunk
    (copy / "users.parquet").write_bytes(bytes(blob))
    assert snapshot_id(copy) != first

    (data / "watches" / "part-0.parquet").rename(data / "watches" / "part-1.parquet")
    assert snapshot_id(data) != first
    with pytest.raises(InvalidInput, match="not a directory"):
        snapshot_id(tmp_path / "absent")


def test_snapshot_id_leaves_out_copies_in_progress_and_merged_parts(tmp_path: Path) -> None:
    """What ingest writes beside the data (a hidden copy) and the parts a merge replaced
    (compaction deletes them later, maybe while a build hashes) are not the data."""
    data = tmp_path / "data"
    (data / "watches").mkdir(parents=True)
    for i in range(3):
        pq.write_table(pa.table({"user_id": [i]}), data / "watches" / f"log-part-{i}.parquet")
    compact(data / "watches", min_parts=2)
    merged = snapshot_id(data)
    (data / "watches" / ".log-part-9.parquet.123.tmp").write_bytes(b"being copied")
    assert snapshot_id(data) == merged
    for i in range(3):
        (data / "watches" / f"log-part-{i}.parquet").unlink()  # what compaction does later
    assert snapshot_id(data) == merged
    (data / "watches" / "mine.parquet").write_bytes(b"another part")
    assert snapshot_id(data) != merged


def test_git_sha_is_head_of_this_repository() -> None:
    repo = Path(__file__).resolve().parent
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    sha = git_sha()
    assert sha.split("+")[0] == head
    assert sha in (head, head + "+dirty")
