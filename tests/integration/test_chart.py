"""The Helm chart against a real API server: lint, render every ci/ scenario and have the
API server validate each object (server-side dry run with strict field validation,
against the Kubernetes, KServe, Prometheus Operator and our own CRD schemas), install with
--wait, upgrade and roll back, least-privilege RBAC, and bad input rejected with the
field named."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from kubernetes import client

from k8s_cluster import CRDS, ROOT, ControlPlane
from vidrec import cli
from vidrec.config import Settings
from vidrec.deploy import dashboards
from vidrec.deploy.chart import generate

pytestmark = pytest.mark.integration

CHART = ROOT / "charts" / "vidrec"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))


@pytest.fixture(scope="module")
def cluster(k8s: ControlPlane) -> ControlPlane:
    """The session's API server with the Prometheus Operator CRDs and the chart's own."""
    k8s.apply_crds(sorted((CRDS / "prometheus-operator-v0.93.1").glob("*.yaml")))
    k8s.apply_crds(sorted((CHART / "crds").glob("*.yaml")))
    return k8s


def render(k8s: ControlPlane, *args: str) -> list[dict[str, Any]]:
    out = k8s.run("helm", "template", "demo", str(CHART), "-n", "vidrec", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_generated_chart_files_are_current() -> None:
    assert generate(CHART, check=True) == dict.fromkeys(generate(CHART, check=True), "unchanged")


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_each_scenario_lints_renders_and_validates_on_the_api_server(
    cluster: ControlPlane, values: Path
) -> None:
    cluster.run("helm", "lint", "--strict", str(CHART), "-f", str(values))
    objects = render(cluster, "-f", str(values))
    kinds = {o["kind"] for o in objects}
    assert {"InferenceService", "ConfigMap", "PersistentVolumeClaim"} <= kinds
    ns = cluster.namespace(f"dry-{values.stem}")
    # the API server checks every object against its schema; strict: unknown fields fail
    cluster.run(
        "kubectl",
        "apply",
        "-n",
        ns,
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(objects),
    )
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["vidrec.json"]
    settings = Settings.model_validate_json(config)  # the pods read this: it must load
    assert settings.rollout.routes.is_absolute() and settings.registry.root.is_absolute()


def test_values_reach_the_objects(cluster: ControlPlane) -> None:
    objects = render(cluster, "-f", str(CHART / "ci" / "full-values.yaml"))
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    config = json.loads(by[("ConfigMap", "demo-vidrec-config")]["data"]["vidrec.json"])
    assert config["serving"]["max_per_creator"] == 3  # the user's settings, merged over the chart's
    assert config["registry"]["tracking_uri"] == "http://demo-vidrec-mlflow:5000"
    mro = by[("ModelRollout", "demo-vidrec")]
    assert mro["spec"]["version"] == "2" and mro["spec"]["policy"]["steps"] == [5, 25, 50]
    pred = by[("InferenceService", "demo-vidrec")]["spec"]["predictor"]
    assert pred["containers"][0]["image"] == "registry.example.com/vidrec:0.1.0"
    assert pred["minReplicas"] == 2
    # two pods: feedback may reach either, so what they served is kept in the shared Redis;
    # the features too, in the settings every component reads (materialize as serving)
    assert config["serving"]["served_store"] == "redis://demo-vidrec-redis:6379/1"
    assert config["features"]["online_store"] == "redis://demo-vidrec-redis:6379/0"
    rules = by[("PrometheusRule", "demo-vidrec")]["spec"]["groups"]
    assert [g["name"] for g in rules] == ["vidrec.recording", "vidrec.alerts"]
    boards = {n: o for (k, n), o in by.items() if k == "ConfigMap" and n.endswith("-dashboard")}
    served = {name: text.rstrip("\n") for name, text in dashboards.files().items()}
    assert {f for o in boards.values() for f in o["data"]} == set(served)
    for o in boards.values():  # what Grafana's sidecar selects, and the folder it files under
        assert o["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert o["metadata"]["annotations"] == {"grafana_folder": "vidrec"}
        assert all(served[f] == text for f, text in o["data"].items())
    knative = render(cluster, "-f", str(CHART / "ci" / "knative-values.yaml"))
    isvc = next(o for o in knative if o["kind"] == "InferenceService")
    env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
    assert env["VIDREC_MODEL_VERSION"] == "3"  # what KServeRouter reads and moves
    settings = Settings.model_validate_json(
        next(o for o in knative if o["kind"] == "ConfigMap")["data"]["vidrec.json"]
    )
    assert settings.serving.served_store == ""  # no Redis: each pod's own memory
    # and the features on the shared volume, where a materialize Job writes them
    assert settings.features.online_store == "sqlite:////var/lib/vidrec/online.db"
    assert isvc["metadata"]["annotations"]["vidrec.io/champion"] == "3"
    out = cluster.run(
        "helm",
        "template",
        "demo",
        str(CHART),
        "--set",
        "serving.deploymentMode=Knative",
        check=False,
    )
    assert out.returncode != 0 and "serving.modelVersion" in out.stderr
    minimal = render(cluster, "-f", str(CHART / "ci" / "minimal-values.yaml"))
    assert not {"Deployment", "CronJob", "PrometheusRule", "PodMonitor"} & {
        o["kind"] for o in minimal
    }
    assert not [o for o in minimal if o["metadata"]["name"].endswith("-dashboard")]


def parse_cli(args: list[str]) -> dict[str, Any]:
    """The options `vidrec ARGS` would run with (click parses; nothing runs)."""
    cmd = typer.main.get_command(cli.app)
    ctx = cmd.make_context("vidrec", list(args))
    while hasattr(cmd, "resolve_command"):  # a group (typer vendors its own click)
        name, sub, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None, f"no command {name!r} in {args}"
        cmd, ctx = sub, sub.make_context(name or "", rest, parent=ctx)
    return dict(ctx.params)


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_every_vidrec_container_runs_a_command_the_cli_has(
    cluster: ControlPlane, values: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(cluster, "-f", str(values))
    monkeypatch.setenv("POD_NAMESPACE", "vidrec")
    ran = set()
    for obj in objects:
        for path, node in _containers(obj):
            if "vidrec" not in node["image"].split("/")[-1]:
                continue
            params = parse_cli(node["args"])
            assert params["config"] == Path("/etc/vidrec/vidrec.json"), path
            ran.add(node["args"][0])
    assert "serve" in ran


def _containers(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "containers":
                yield from ((f"{path}/{c['name']}", c) for c in value)
            else:
                yield from _containers(value, f"{path}/{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item, path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "image.tagg=x"], r"at '/image': additional properties 'tagg' not allowed"),
        (["--set", "config.serving.max_per_creatorr=3"], r"'max_per_creatorr' not allowed"),
        (["--set", "serving.replicas=0"], r"at '/serving/replicas': minimum"),
        (["--set", "serving.deploymentMode=Serverless"], r"at '/serving/deploymentMode'"),
    ],
    ids=["unknown-key", "unknown-setting", "replicas-0", "bad-mode"],
)
def test_bad_values_are_refused_naming_the_key(
    cluster: ControlPlane, args: list[str], message: str
) -> None:
    out = cluster.run("helm", "template", "demo", str(CHART), *args, check=False)
    assert out.returncode != 0
    assert re.search(message, out.stderr), out.stderr


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([5, 150], r"spec\.policy\.steps\[1\]: Invalid value: 150"),
        ([50, 10], r"spec\.policy\.steps: Invalid value: .*steps must rise"),
        ([2, 50], r"first canary step must hold at least analysis\.min_cohorts"),
    ],
    ids=["weight-over-100", "falling", "too-few-cohorts"],
)
def test_the_crd_refuses_an_invalid_policy(
    cluster: ControlPlane, steps: list[float], message: str
) -> None:
    mro = {
        "apiVersion": "vidrec.io/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {
            "version": "2",
            "target": {"inferenceService": "demo"},
            "policy": {"steps": steps},
        },
    }
    out = cluster.run(
        "kubectl", "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(mro), check=False
    )
    assert out.returncode != 0
    assert re.search(message, out.stderr), out.stderr


@pytest.fixture(scope="module")
def installed(cluster: ControlPlane) -> Iterator[str]:
    """The chart installed with --wait into its own namespace (a PV for its claim)."""
    core = client.CoreV1Api(cluster.api_client())
    core.create_persistent_volume(
        {
            "metadata": {"name": "vidrec-data"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": str(cluster.dir / "pv")},
            },
        }
    )
    ns = "vidrec"
    cluster.run(
        "helm",
        "install",
        "demo",
        str(CHART),
        "-n",
        ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
    )
    yield ns
    cluster.run("helm", "uninstall", "demo", "-n", ns, "--wait", check=False)


def test_install_waits_for_every_deployment_to_be_available(
    cluster: ControlPlane, installed: str
) -> None:
    apps = client.AppsV1Api(cluster.api_client())
    deployments = apps.list_namespaced_deployment(installed).items
    assert {d.metadata.name for d in deployments} == {"demo-vidrec-operator", "demo-vidrec-monitor"}
    for d in deployments:
        assert d.status.available_replicas == d.spec.replicas, d.status
    status = json.loads(cluster.run("helm", "status", "demo", "-n", installed, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 1


def test_the_notes_show_a_call_that_works_and_when_feedback_needs_redis(
    cluster: ControlPlane,
) -> None:
    def notes(*args: str) -> str:
        out = cluster.run("helm", "install", "n", str(CHART), "--dry-run=client", "-o", "json",
                          *args)  # fmt: skip
        return str(json.loads(out.stdout)["info"]["notes"])

    one = notes()
    assert "-H 'content-type: application/json'" in one  # curl -d alone is a form: 415
    assert "Feedback may reach" not in one
    for args in (
        ["--set", "serving.replicas=2"],
        ["-f", str(CHART / "ci" / "knative-values.yaml")],
    ):
        assert "Set redis.enabled=true" in notes(*args), args
        assert "Feedback may reach" not in notes(*args, "--set", "redis.enabled=true")


def test_upgrade_then_rollback_restores_the_previous_revision(
    cluster: ControlPlane, installed: str
) -> None:
    objects = client.CustomObjectsApi(cluster.api_client())

    def replicas() -> int:
        isvc = objects.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", installed, "inferenceservices", "demo-vidrec"
        )
        return int(isvc["spec"]["predictor"]["minReplicas"])

    cluster.run(
        "helm",
        "upgrade",
        "demo",
        str(CHART),
        "-n",
        installed,
        "--wait",
        "--reuse-values",
        "--set",
        "serving.replicas=3",
    )
    assert replicas() == 3
    cluster.run("helm", "rollback", "demo", "1", "-n", installed, "--wait")
    assert replicas() == 1
    history = json.loads(
        cluster.run("helm", "history", "demo", "-n", installed, "-o", "json").stdout
    )
    assert [h["status"] for h in history] == ["superseded", "superseded", "deployed"]


@pytest.mark.parametrize(
    ("verb", "what", "where", "allowed"),
    [
        ("patch", "modelrollouts.vidrec.io", None, "yes"),
        ("update", "modelrollouts.vidrec.io --subresource=status", None, "yes"),
        ("update", "inferenceservices.serving.kserve.io/demo-vidrec", None, "yes"),
        ("create", "events", None, "yes"),
        ("update", "inferenceservices.serving.kserve.io/someone-else", None, "no"),
        ("get", "secrets", None, "no"),
        ("list", "configmaps", None, "no"),
        ("patch", "modelrollouts.vidrec.io", "default", "no"),
        ("create", "deployments.apps", None, "no"),
    ],
)
def test_the_operator_can_do_its_job_and_nothing_else(
    cluster: ControlPlane, installed: str, verb: str, what: str, where: str | None, allowed: str
) -> None:
    assert_can_i(cluster, installed, "demo-vidrec-operator", verb, what, where, allowed)


def assert_can_i(
    cluster: ControlPlane, ns: str, account: str, verb: str, what: str, where: str | None,
    allowed: str,
) -> None:  # fmt: skip
    """`kubectl auth can-i` as service account `account` of `ns` answers `allowed`."""
    who = f"system:serviceaccount:{ns}:{account}"
    args = [verb, *what.split(), "-n", where or ns, "--as", who]
    out = cluster.run("kubectl", "auth", "can-i", *args, check=False)
    assert out.stdout.strip() == allowed, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("verb", "what", "where", "allowed"),
    [
        ("get", "cronjobs.batch/demo-vidrec-retrain", None, "yes"),
        ("create", "jobs.batch", None, "yes"),
        ("watch", "jobs.batch", None, "yes"),
        ("list", "pods", None, "yes"),
        ("get", "cronjobs.batch/someone-else", None, "no"),
        ("delete", "jobs.batch", None, "no"),
        ("create", "pods", None, "no"),
        ("get", "pods/log", None, "no"),
        ("get", "secrets", None, "no"),
        ("create", "jobs.batch", "default", "no"),
    ],
)
def test_the_monitor_can_start_retraining_jobs_and_nothing_else(
    cluster: ControlPlane, installed: str, verb: str, what: str, where: str | None, allowed: str
) -> None:
    assert_can_i(cluster, installed, "demo-vidrec-monitor", verb, what, where, allowed)


@pytest.mark.parametrize("jobs", [True, False], ids=["retraining", "no-retraining"])
def test_the_monitor_has_a_token_only_to_start_retraining_jobs(
    cluster: ControlPlane, jobs: bool
) -> None:
    objects = render(cluster, "--set", f"retraining.enabled={str(jobs).lower()}")
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    account = by[("ServiceAccount", "demo-vidrec-monitor")]
    assert account["automountServiceAccountToken"] is jobs
    assert (("Role", "demo-vidrec-monitor") in by) is jobs
    pod = by[("Deployment", "demo-vidrec-monitor")]["spec"]["template"]["spec"]
    params = parse_cli(pod["containers"][0]["args"])
    assert params["retrain_job"] == ("demo-vidrec-retrain" if jobs else None)
