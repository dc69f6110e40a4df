"""The kind quickstart against a real API server (the session's control plane with the KServe
v0.20.0, Prometheus Operator v0.93.1 and vidrec CRDs), as far as it goes without Docker:
the chart renders with manifests/kind-values.yaml for the pinned node's Kubernetes version
and every object validates; each example ModelRollout, version set as tools/kind/demo.sh
sets it, is accepted by our CRD and stored with the policy the operator parses; the Jobs
tools/kind/*.sh make from the retraining CronJob validate and run CLI commands on the paths
the chart mounts. Creating the cluster, pulling the charts and running the pods is not
tested here (no Docker engine)."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from test_chart import CHART, cluster, parse_cli  # noqa: F401  (cluster: the fixture)

from k8s_cluster import ControlPlane
from kind_files import MANIFESTS, ROLLOUTS, example, lib, versions
from vidrec.config import RolloutPolicy, Settings, parse
from vidrec.deploy import crd

pytestmark = pytest.mark.integration

KIND_VALUES = MANIFESTS / "kind-values.yaml"
TAG = "kind-0123456789ab"  # what up.sh sets: kind- and 12 hex digits of the image id


def node_version() -> str:
    """The Kubernetes version of the pinned kind node image (kindest/node:vX.Y.Z@...)."""
    found = re.search(r":v(\d+\.\d+\.\d+)@", versions()["KIND_NODE_IMAGE"])
    assert found
    return found.group(1)


def render_kind(k8s: ControlPlane, namespace: str, *args: str) -> Any:
    """`helm template` as up.sh installs it: release vidrec, kind-values.yaml, the image tag."""
    values = ("-f", str(KIND_VALUES), "--set", f"image.tag={TAG}")
    return k8s.run("helm", "template", "vidrec", str(CHART), "-n", namespace, *values, *args,
                   check=False)  # fmt: skip


def test_the_chart_renders_for_the_kind_node_and_every_object_validates(
    cluster: ControlPlane,  # noqa: F811
) -> None:
    kube = ("--kube-version", node_version())
    cluster.run("helm", "lint", "--strict", str(CHART), "-f", str(KIND_VALUES), *kube)
    out = render_kind(cluster, "vidrec", *kube)
    assert out.returncode == 0, out.stderr
    objects = [d for d in yaml.safe_load_all(out.stdout) if d]
    ns = cluster.namespace("kind-dry")
    cluster.run("kubectl", "apply", "-n", ns, "--dry-run=server", "--validate=strict",
                "-f", "-", stdin=yaml.safe_dump_all(objects))  # fmt: skip
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    isvc = by[("InferenceService", "vidrec")]  # what every example ModelRollout targets
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    server = isvc["spec"]["predictor"]["containers"][0]
    assert server["image"] == f"vidrec:{TAG}" and server["imagePullPolicy"] == "IfNotPresent"
    config = by[("ConfigMap", "vidrec-config")]["data"]["vidrec.json"]
    settings = Settings.model_validate_json(config)  # what the pods (and the Jobs) read
    mount = next(m["mountPath"] for m in server["volumeMounts"] if m["name"] == "data")
    # the online store up.sh materialises lives on the shared volume serving mounts
    assert settings.features.online_store == f"sqlite:///{mount}/online.db"
    # its impression log is serve's default, beside the route table: where retraining reads
    assert "--log-dir" not in server["args"]
    # the examples' analysis windows hold at least two scrapes of the model server
    scrape_s = float(by[("PodMonitor", "vidrec-serving")]["spec"]["podMetricsEndpoints"][0]
                     ["interval"].rstrip("s"))  # fmt: skip
    for path in ROLLOUTS:
        assert example(path)[1].analysis.window_s >= 2 * scrape_s, path.name
    # the pin is checked, not assumed: an older node is refused by the chart's kubeVersion
    old = render_kind(cluster, "vidrec", "--kube-version", "1.28.0")
    assert old.returncode != 0 and "chart requires kubeVersion" in old.stderr


@pytest.mark.parametrize("path", ROLLOUTS, ids=lambda p: p.stem)
def test_each_example_is_accepted_by_the_crd_and_stored_as_the_operator_reads_it(
    cluster: ControlPlane,  # noqa: F811
    path: Path,
) -> None:
    ns = cluster.namespace(f"kind-{path.stem}")
    manifest = lib(f'rollout_manifest "$(rollout_file {path.stem})" 5')  # what demo.sh applies
    assert manifest.returncode == 0, manifest.stderr
    cluster.run("kubectl", "apply", "-n", ns, "--validate=strict", "-f", "-",
                stdin=manifest.stdout)  # fmt: skip
    objects = client.CustomObjectsApi(cluster.api_client())
    stored = cast(dict[str, Any], objects.get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, ns, crd.PLURAL, "vidrec"))  # fmt: skip
    assert stored["spec"]["version"] == "5"
    # the CRD's defaults fill what the file leaves out exactly as the policy model does
    policy = parse(RolloutPolicy, stored["spec"]["policy"], "stored")
    assert policy == example(path)[1]
    assert stored["spec"]["policy"] == policy.model_dump(mode="json")
    # and the CRD does check these documents: the same example with falling steps is refused
    bad = copy.deepcopy(yaml.safe_load(manifest.stdout))
    bad["spec"]["policy"]["steps"] = sorted(bad["spec"]["policy"]["steps"], reverse=True)
    out = cluster.run("kubectl", "apply", "-n", ns, "--dry-run=server", "-f", "-",
                      stdin=yaml.safe_dump(bad), check=False)  # fmt: skip
    assert out.returncode != 0 and "steps must rise" in out.stderr


@pytest.fixture(scope="module")
def kind_release(cluster: ControlPlane) -> str:  # noqa: F811
    """The chart installed as up.sh installs it (no pod runs: the Jobs are only validated)."""
    ns = "kind-jobs"
    cluster.run("helm", "install", "vidrec", str(CHART), "-n", ns, "--create-namespace",
                "-f", str(KIND_VALUES), "--set", f"image.tag={TAG}")  # fmt: skip
    return ns


def script_env(k8s: ControlPlane, namespace: str) -> dict[str, str]:
    return {"VIDREC_NS": namespace, "VIDREC_KUBECONFIG": str(k8s.kubeconfig),
            "PATH": f"{k8s.bin}:{os.environ['PATH']}"}  # fmt: skip


@pytest.mark.parametrize(
    ("call", "name", "command"),
    [
        ("train_job vidrec-train-initial", "vidrec-train-initial", "pipeline"),
        ("simulate_job", "vidrec-simulate", "simulate"),
        ("materialize_job", "vidrec-materialize", "features"),
        ("traffic_job", "vidrec-traffic", "traffic"),
    ],
    ids=["train", "simulate", "materialize", "traffic"],
)
def test_the_scripts_jobs_validate_and_run_cli_commands_on_the_shared_volume(
    cluster: ControlPlane,  # noqa: F811
    kind_release: str,
    call: str,
    name: str,
    command: str,
) -> None:
    out = lib(call, env=script_env(cluster, kind_release))
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["kind"] == "Job" and job["metadata"]["name"] == name
    cluster.run("kubectl", "create", "-n", kind_release, "--dry-run=server", "--validate=strict",
                "-f", "-", stdin=out.stdout)  # fmt: skip
    # not the CronJob's: its history limit would delete them, a running one hold it back
    assert not job["metadata"].get("ownerReferences")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"vidrec:{TAG}" and container["args"][0] == command
    assert "--json" in container["args"]  # demo.sh reads the training run's summary line
    params = parse_cli(container["args"])
    data = Path(lib('echo "$DATA"').stdout.strip())
    mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
    assert mounts["data"] in data.parents  # the simulated log is on the shared volume
    # simulate writes the log where training, materialize and traffic read it
    assert params.get("data", params.get("out")) == data
    if command in ("features", "pipeline"):
        assert params["config"] == mounts["config"] / "vidrec.json"
    if command == "pipeline":  # the CronJob's own command
        assert container["args"][:3] == ["pipeline", "run", "training"]
        # it appends what the model server logged (beside its route table) to the data
        cm = cluster.run("kubectl", "get", "configmap", "vidrec-config", "-n", kind_release,
                         "-o", "jsonpath={.data.vidrec\\.json}")  # fmt: skip
        routes = Settings.model_validate_json(cm.stdout).rollout.routes
        assert params["log"] == routes.parent / "log" and mounts["data"] in routes.parents
    if command == "traffic":  # KServe's Service for the InferenceService's predictor
        assert params["url"] == f"http://vidrec-predictor.{kind_release}.svc"
        assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}}


def test_kubectls_own_job_from_the_cronjob_would_be_owned_by_it(
    cluster: ControlPlane,  # noqa: F811
    kind_release: str,
) -> None:
    """Why job_from_cronjob clears ownerReferences: `create job --from` sets the CronJob."""
    out = cluster.run("kubectl", "create", "job", "x", "--from=cronjob/vidrec-retrain",
                      "-n", kind_release, "--dry-run=client", "-o", "json")  # fmt: skip
    owners = json.loads(out.stdout)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("CronJob", "vidrec-retrain")]


def test_the_online_store_is_refreshed_from_the_data_retraining_reads(
    cluster: ControlPlane,  # noqa: F811
    kind_release: str,
) -> None:
    """The materialize CronJob appends the same impression log to the same data as the
    retraining CronJob, then writes the store the settings name (the one serving reads)."""
    jobs = {}
    for name in ("vidrec-materialize", "vidrec-retrain"):
        out = cluster.run("kubectl", "get", "cronjob", name, "-n", kind_release, "-o", "json")
        spec = json.loads(out.stdout)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        jobs[name] = parse_cli(spec["containers"][0]["args"])
    store, train = jobs["vidrec-materialize"], jobs["vidrec-retrain"]
    assert (store["data"], store["log"]) == (train["data"], train["log"])
    assert store["store"] is None and store["config"] == train["config"]  # the settings' store
