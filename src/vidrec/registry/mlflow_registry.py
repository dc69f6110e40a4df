"""The registry on the MLflow Model Registry.

A version is one MLflow run that holds the bundle as artifacts under "bundle"
plus a model version whose source is that artifact directory; the manifest's
key facts and the gate report are version tags, so `vidrec` and the MLflow UI
show the same lineage. This module never touches MLflow's process-global state
(tracking URI, active run), so two registries in one process stay independent,
and it never registers anything whose gate report failed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow.artifacts
import sqlalchemy.exc
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vidrec.config import RegistryConfig
from vidrec.errors import InvalidInput, NotFound, SchemaError, VidrecError
from vidrec.registry.bundle import Manifest, parse_manifest, read_manifest
from vidrec.registry.gates import GateFailed, GateReport
from vidrec.registry.registry import VersionInfo, check_alias

MANIFEST_TAG = "vidrec.manifest"  # the whole manifest; VersionInfo.manifest, not .tags
GATES_TAG = "gate_report"
_RESERVED_TAGS = (MANIFEST_TAG, GATES_TAG)
_ERRORS: dict[str, type[VidrecError]] = {
    "RESOURCE_DOES_NOT_EXIST": NotFound,
    "INVALID_PARAMETER_VALUE": InvalidInput,
}


class MlflowRegistry:
    def __init__(self, cfg: RegistryConfig) -> None:
        _quiet_mlflow()
        self.cfg = cfg
        self.name = cfg.model_name
        self.uri, self._artifact_location = _locations(cfg)
        with warnings.catch_warnings():
            # MLflow's own SQLAlchemy mappers use a deprecated loader; nothing for us to fix
            warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy")
            try:  # a database store is opened (and its tables checked) here
                self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            except sqlalchemy.exc.DatabaseError as exc:
                raise InvalidInput(
                    f"registry {self.uri}: not a database MLflow can use ({exc.orig}); "
                    "restore it, or name another registry.root / registry.tracking_uri",
                    tracking_uri=self.uri,
                ) from exc

    def register(self, bundle: Path, report: GateReport, alias: str | None = None) -> VersionInfo:
        if not report.passed:
            raise GateFailed(report)
        if alias is not None:
            check_alias(alias)
        manifest = read_manifest(bundle)
        run_id, source = self._log_run(bundle, manifest)
        with self._translated():
            self._ensure_model()
            mv = self.client.create_model_version(
                self.name, source, run_id=run_id, tags=_version_tags(manifest, report)
            )
        if alias is not None:
            self.set_alias(alias, int(mv.version))
        return self.get(str(mv.version))

    def set_alias(self, alias: str, version: int) -> None:
        check_alias(alias)
        self._version(version)
        with self._translated():
            self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        check_alias(alias)
        if alias in self._aliases():
            with self._translated():
                self.client.delete_registered_model_alias(self.name, alias)

    def get(self, ref: str) -> VersionInfo:
        return self._info(self._resolve(ref), self._aliases())

    def download(self, ref: str, dest: Path) -> Path:
        """The bundle at `dest/<model>-v<version>`; downloaded once, reused after."""
        mv = self._resolve(ref)
        target = dest / f"{self.name}-v{mv.version}"
        if not target.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            # download beside the target, then rename: readers never see half a bundle
            with (
                tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp,
                self._translated(),
            ):
                got = mlflow.artifacts.download_artifacts(
                    artifact_uri=mv.source, dst_path=tmp, tracking_uri=self.uri
                )
                _rename(Path(got), target)
        # compared as JSON: a NaN metric is never == itself
        if read_manifest(target).model_dump_json() != self._manifest(mv).model_dump_json():
            raise SchemaError(
                f"{target}: manifest differs from the registered version {mv.version}",
                path=str(target),
            )
        return target

    def versions(self) -> list[VersionInfo]:
        aliases = self._aliases()
        found: list[ModelVersion] = []
        token: str | None = None
        with self._translated():
            while True:
                page = self.client.search_model_versions(f"name = '{self.name}'", page_token=token)
                found += page
                token = page.token
                if not token:
                    break
        return sorted((self._info(mv, aliases) for mv in found), key=lambda v: v.version)

    def tag(self, version: int, key: str, value: str) -> None:
        if key in _RESERVED_TAGS:
            raise InvalidInput(f"tag {key!r} is written by the registry itself", key=key)
        self._version(version)
        with self._translated():
            self.client.set_model_version_tag(self.name, str(version), key, value)

    # -- internals ---------------------------------------------------------------

    def _log_run(self, bundle: Path, m: Manifest) -> tuple[str, str]:
        """A finished run holding the bundle; returns (run id, the bundle's artifact URI)."""
        with self._translated():
            run = self.client.create_run(
                self._experiment_id(),
                run_name=f"{m.model_name}-{m.created_at}",
                tags={"mlflow.source.git.commit": m.git_sha},
            )
        run_id = run.info.run_id
        try:
            with self._translated():
                self.client.log_artifacts(run_id, str(bundle), "bundle")
                self.client.log_batch(run_id, metrics=_metrics(m), params=_params(m))
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id)
        return run_id, f"{run.info.artifact_uri}/bundle"

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.cfg.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        try:
            return self.client.create_experiment(
                self.cfg.experiment, artifact_location=self._artifact_location
            )
        except MlflowException as exc:  # another process created it first
            exp = self.client.get_experiment_by_name(self.cfg.experiment)
            if exp is None:
                raise exc from None
            return str(exp.experiment_id)

    def _ensure_model(self) -> None:
        try:
            self.client.create_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _resolve(self, ref: str) -> ModelVersion:
        if ref.isdigit():
            return self._version(int(ref))
        aliases = self._aliases()
        if ref not in aliases:
            have = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            raise NotFound(
                f"model {self.name!r}: no version has alias {ref!r} (aliases: {have})", ref=ref
            )
        return self._version(aliases[ref])

    def _version(self, version: int) -> ModelVersion:
        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise NotFound(
                f"model {self.name!r} has no version {version}", version=version
            ) from exc

    def _aliases(self) -> dict[str, int]:
        """alias -> version; empty before the first registration."""
        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {a: int(v) for a, v in model.aliases.items()}

    def _manifest(self, mv: ModelVersion) -> Manifest:
        where = f"model {self.name!r} version {mv.version} tag {MANIFEST_TAG}"
        return parse_manifest(mv.tags.get(MANIFEST_TAG, ""), where)

    def _info(self, mv: ModelVersion, aliases: dict[str, int]) -> VersionInfo:
        version = int(mv.version)
        return VersionInfo(
            version=version,
            aliases=sorted(a for a, v in aliases.items() if v == version),
            source=str(mv.source),
            manifest=self._manifest(mv),
            tags={k: v for k, v in mv.tags.items() if k != MANIFEST_TAG},
            created_at=int(mv.creation_timestamp) // 1000,
        )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """MLflow's not-found and bad-value errors as vidrec 404 / 400; others unchanged."""
        try:
            yield
        except MlflowException as exc:
            cls = _ERRORS.get(exc.error_code)
            if cls is None:
                raise
            raise cls(
                f"registry {self.name!r}: {exc.message}", mlflow_error=exc.error_code
            ) from exc


def _locations(cfg: RegistryConfig) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment; None lets a server choose)."""
    if cfg.tracking_uri is not None and cfg.tracking_uri.startswith(
        ("http://", "https://", "databricks")
    ):
        return cfg.tracking_uri, None
    root = cfg.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = cfg.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    return uri, (root / "artifacts").as_uri()


def _version_tags(m: Manifest, report: GateReport) -> dict[str, str]:
    return {
        "schema_hash": m.schema_hash,
        "data_snapshot_id": m.data_snapshot_id,
        "git_sha": m.git_sha,
        "feature_set": m.feature_set,
        "training_window": json.dumps(list(m.training_window)),
        "validation_window": json.dumps(list(m.validation_window)),
        GATES_TAG: json.dumps(report.to_dict()),
        MANIFEST_TAG: m.model_dump_json(),
    }


def _params(m: Manifest) -> list[Param]:
    scalar = m.model_dump(exclude={"metrics", "gates", "files"})
    return [
        Param(k, json.dumps(list(v)) if isinstance(v, tuple) else str(v)) for k, v in scalar.items()
    ]


def _metrics(m: Manifest) -> list[Metric]:
    ts_ms = m.created_at * 1000
    return [Metric(k, v, ts_ms, 0) for k, v in sorted(m.metrics.items())]


def _rename(src: Path, target: Path) -> None:
    try:
        src.rename(target)
    except OSError:
        if not target.is_dir():  # else a concurrent download of the same version won
            raise


def _quiet_mlflow() -> None:
    # MLflow logs every schema migration of a new database at INFO and draws a
    # progress bar per download; warnings and errors still show
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
