"""The Helm chart's values, as typed settings: the one source of `values.yaml` (every key
with its comment) and `values.schema.json` (which makes helm reject unknown keys and bad
values before anything reaches the cluster).

`config` is vidrec's own settings tree, the TOML local mode reads, so the chart declares
everything local mode does; its schema is `vidrec.config.Settings`'s.
"""

from __future__ import annotations

import textwrap
from typing import Any, Literal

import yaml
from pydantic import Field

from vidrec.config import RolloutPolicy, Setting, Settings, Strict


class Image(Setting):
    """The one vidrec image: model server, drift monitor, operator and pipeline."""

    repository: str = Field("vidrec", min_length=1, description="image repository")
    tag: str = Field("", description="image tag; empty: the chart's appVersion")
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="kind loads the image into the nodes: IfNotPresent"
    )


class Resources(Setting):
    """Kubernetes container resources (requests and limits)."""

    requests: dict[str, str] = Field(default_factory=dict, description="e.g. cpu, memory")
    limits: dict[str, str] = Field(default_factory=dict, description="e.g. cpu, memory")


class Serving(Setting):
    """The model server: a KServe InferenceService running `vidrec serve` (Ray Serve inside
    the KServe ModelServer)."""

    deploymentMode: Literal["Standard", "Knative"] = Field(
        "Standard",
        description="Standard (raw Deployment; canaries by serving's own sticky route table) "
        "or Knative (a rollout may also use KServe's canaryTrafficPercent)",
    )
    modelVersion: str = Field(
        "",
        description="Knative mode: the registry version the latest revision serves (a "
        "kserve-router rollout changes it). Standard mode: empty; the registry's champion "
        "and challenger aliases decide",
    )
    replicas: int = Field(1, ge=1, description="predictor replicas (minReplicas)")
    port: int = Field(8080, ge=1, le=65535, description="HTTP port of the model server")
    resources: Resources = Resources(
        requests={"cpu": "1", "memory": "4Gi"}, limits={"cpu": "2", "memory": "6Gi"}
    )


class Registry(Setting):
    """Where model versions come from (MLflow's registry)."""

    trackingUri: str = Field(
        "",
        description="MLflow tracking URI; empty: the bundled MLflow server when "
        "mlflow.enabled, else sqlite on the shared volume",
    )


class Mlflow(Setting):
    """An optional MLflow tracking and registry server (sqlite on a volume)."""

    enabled: bool = Field(False, description="deploy it")
    image: str = Field("ghcr.io/mlflow/mlflow:v3.5.0", description="its image")
    storage: str = Field("5Gi", description="volume for its database and artifacts")


class Redis(Setting):
    """An optional Redis: the online feature store, and where served requests wait for their
    feedback, shared by the model-server pods. Without it each pod keeps its own: with
    serving.replicas above 1, or a Knative canary's two revisions, an outcome posted to a pod
    that did not serve its request is rejected (unknown_request) and its click not counted."""

    enabled: bool = Field(
        False, description="deploy it and point serving at it (features and served requests)"
    )
    image: str = Field("redis:7.4-alpine", description="its image")


class Storage(Setting):
    """The volume serving, monitor and pipeline share (registry, request log, features)."""

    size: str = Field("10Gi", description="its size")
    storageClassName: str = Field("", description="empty: the cluster's default class")


class Monitor(Setting):
    """The drift monitor (`vidrec monitor`): Alibi Detect (BSL 1.1) on Prometheus's
    histograms; on sustained drift it starts a Job from the retraining CronJob (without it,
    retraining.enabled=false: it retrains in its own pod)."""

    enabled: bool = Field(True, description="deploy it")
    resources: Resources = Resources(requests={"cpu": "250m", "memory": "1Gi"})


class Retraining(Setting):
    """The training pipeline as a CronJob, also started by the drift monitor on sustained
    drift; a challenger is registered only past the gates."""

    enabled: bool = Field(
        True, description="deploy the CronJob and let the monitor create Jobs from it"
    )
    schedule: str = Field("0 3 * * *", description="cron schedule")
    resources: Resources = Resources(requests={"cpu": "1", "memory": "4Gi"})


class Materialize(Setting):
    """The online store refreshed on a schedule (`vidrec features materialize`), after the
    model server's impression log joins the data: serving reads the features of the data
    retraining reads, not the install's snapshot forever."""

    enabled: bool = Field(True, description="deploy the CronJob")
    schedule: str = Field(
        "*/30 * * * *", description="cron schedule (features.refresh_seconds: the snapshot's grid)"
    )
    resources: Resources = Resources(requests={"cpu": "500m", "memory": "2Gi"})


class Operator(Setting):
    """The kopf operator that reconciles ModelRollouts (leader election by kopf peering)."""

    enabled: bool = Field(True, description="deploy it")
    replicas: int = Field(1, ge=1, description="more than one: standbys, one leads")
    resources: Resources = Resources(requests={"cpu": "100m", "memory": "256Mi"})


class Rollout(Setting):
    """A ModelRollout declared with the release: set `challenger` to release a version."""

    challenger: str = Field(
        "", description="registry version to roll out; empty: no ModelRollout is rendered"
    )
    router: Literal["app", "kserve"] = Field(
        "app", description="app: sticky user cohorts and shadow; kserve: canaryTrafficPercent"
    )
    policy: RolloutPolicy = Field(
        RolloutPolicy(), description="shadow, steps, analysis and limits (as in local mode)"
    )


class Monitoring(Setting):
    """Prometheus Operator objects and Grafana dashboards (kube-prometheus-stack)."""

    podMonitor: bool = Field(True, description="scrape the model server's pods")
    serviceMonitor: bool = Field(True, description="scrape the drift monitor and operator")
    prometheusRule: bool = Field(True, description="the recording and alerting rules")
    dashboards: bool = Field(True, description="dashboards as ConfigMaps for Grafana's sidecar")
    dashboardLabels: dict[str, str] = Field(
        {"grafana_dashboard": "1"},
        description="labels Grafana's dashboard sidecar selects ConfigMaps on",
    )
    dashboardAnnotations: dict[str, str] = Field(
        {"grafana_folder": "vidrec"},
        description="annotations on the dashboard ConfigMaps (the sidecar's folderAnnotation "
        "puts them in a Grafana folder)",
    )
    labels: dict[str, str] = Field(
        {"release": "kube-prometheus-stack"},
        description="labels the Prometheus and Grafana of kube-prometheus-stack select on",
    )
    prometheusUrl: str = Field(
        "http://kube-prometheus-stack-prometheus.monitoring:9090",
        description="the Prometheus the monitor and the operator query",
    )


class Values(Setting):
    image: Image = Image()
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="vidrec settings (the TOML tree of local mode: features, train, gates, "
        "registry, serving, monitoring, rollout); unknown keys are rejected",
    )
    serving: Serving = Serving()
    registry: Registry = Registry()
    storage: Storage = Storage()
    monitor: Monitor = Monitor()
    retraining: Retraining = Retraining()
    materialize: Materialize = Materialize()
    operator: Operator = Operator()
    rollout: Rollout = Rollout()
    monitoring: Monitoring = Monitoring()
    mlflow: Mlflow = Mlflow()
    redis: Redis = Redis()


def schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the values; `config` validated as vidrec's Settings."""
    out = Values.model_json_schema()
    settings = Settings.model_json_schema()
    for name, definition in {**settings.pop("$defs", {}), "Settings": settings}.items():
        if out["$defs"].setdefault(name, definition) != definition:
            raise ValueError(f"two different models are named {name} in the values schema")
    config = out["properties"]["config"]
    out["properties"]["config"] = {"$ref": "#/$defs/Settings", "description": config["description"]}
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


def values_yaml() -> str:
    """values.yaml: every key with its default and, above it, what it means."""
    head = [
        "# vidrec chart values. Generated from vidrec.deploy.values (`vidrec chart generate`);",
        "# values.schema.json, from the same source, rejects unknown keys and bad values.",
        "",
    ]
    return "\n".join(head + _lines(Values(), 0)) + "\n"


def _lines(model: Strict, depth: int) -> list[str]:
    pad = "  " * depth
    out: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        doc = field.description or (type(value).__doc__ if isinstance(value, Strict) else None)
        for line in textwrap.wrap(" ".join((doc or "").split()), 96 - len(pad)):
            out.append(f"{pad}# {line}")
        if isinstance(value, Strict) and not isinstance(value, RolloutPolicy):
            out.append(f"{pad}{name}:")
            out.extend(_lines(value, depth + 1))
        else:
            data = value.model_dump(mode="json") if isinstance(value, Strict) else value
            dumped = yaml.safe_dump({name: data}, sort_keys=False, default_flow_style=False)
            out.extend(pad + line for line in dumped.rstrip().splitlines())
    return out
