"""The kind quickstart without a cluster: `manifests/` (versions, kind config, prerequisite
values, example ModelRollouts) and `tools/kind/*.sh`. What needs an API server (the CRD
accepting the examples, the chart rendering with kind-values.yaml, the scripts' Jobs) is in
tests/integration/test_kind_manifests.py; what needs Docker (the cluster itself) is not
tested here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kind_files import KIND, LIB, MANIFESTS, ROLLOUTS, ROOT, example, lib, versions
from vidrec.config import RolloutPolicy
from vidrec.deploy import crd

SCRIPTS = sorted(p for p in KIND.glob("*.sh") if p != LIB)
DEMO_ROLLOUTS = ("demo-fast", "shadow")  # sized for `make kind-demo`'s traffic
VERSION_LITERAL = re.compile(r"\bv?\d+\.\d+\.\d+\b|sha256:[0-9a-f]{8}|kindest/node:")


def test_versions_env_pins_each_prerequisite_exactly() -> None:
    pins = versions()
    assert set(pins) == {
        "KIND_VERSION",
        "KIND_NODE_IMAGE",
        "CERT_MANAGER_CHART",
        "CERT_MANAGER_VERSION",
        "KSERVE_CHARTS",
        "KSERVE_VERSION",
        "KUBE_PROMETHEUS_STACK_CHART",
        "KUBE_PROMETHEUS_STACK_VERSION",
    }
    for key, value in pins.items():
        if key.endswith("_VERSION"):  # an exact release, never a range or "latest"
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", value), (key, value)
        if key.endswith(("_CHART", "_CHARTS")):
            assert value.startswith("oci://"), (key, value)
    # the node image by digest, so a re-pushed tag cannot change the cluster
    assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", pins["KIND_NODE_IMAGE"])


def test_every_version_the_scripts_use_comes_from_versions_env() -> None:
    pins = versions()
    makefile = (ROOT / "Makefile").read_text()
    kind_targets = "\n".join(re.findall(r"^kind-[a-z]+:.*\n(?:\t.*\n)*", makefile, re.M))
    texts = {p: p.read_text() for p in [*KIND.glob("*.sh"), *MANIFESTS.rglob("*.yaml")]}
    texts[ROOT / "Makefile"] = kind_targets
    for path, text in texts.items():
        assert not VERSION_LITERAL.search(text), f"{path}: a version outside versions.env"
    scripts = "\n".join(texts[p] for p in KIND.glob("*.sh"))
    used = set(re.findall(r"\$\{?([A-Z][A-Z_]*)", scripts))
    pinned = {v for v in used if v.endswith(("_VERSION", "_CHART", "_CHARTS", "_IMAGE"))}
    assert pinned == set(pins), "a pin the scripts use is not in versions.env, or is unused"
    # every --version a script passes is one of those variables
    flags = re.findall(r"--version (\S+)", scripts)
    assert len(flags) == 4 and all(re.fullmatch(r'"\$[A-Z_]+_VERSION"', f) for f in flags), flags


def test_the_kserve_pin_is_the_release_whose_crds_the_tests_validate_against() -> None:
    from k8s_cluster import CRDS

    assert (CRDS / f"kserve-{versions()['KSERVE_VERSION']}").is_dir()


def test_the_kind_config_is_one_node_without_a_version_of_its_own() -> None:
    config = yaml.safe_load((MANIFESTS / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    # one node: every vidrec pod mounts the same ReadWriteOnce volume
    assert config["nodes"] == [{"role": "control-plane"}]


def test_the_prerequisite_values_select_vidrecs_monitors_rules_and_dashboards() -> None:
    stack = yaml.safe_load(
        (MANIFESTS / "prereqs" / "kube-prometheus-stack-values.yaml").read_text()
    )
    spec = stack["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind
    sidecar = stack["grafana"]["sidecar"]["dashboards"]
    chart = yaml.safe_load((ROOT / "charts" / "vidrec" / "values.yaml").read_text())["monitoring"]
    assert sidecar["enabled"] and sidecar["searchNamespace"] == "ALL"
    assert chart["dashboardLabels"] == {sidecar["label"]: sidecar["labelValue"]}
    # up.sh installs the stack where the chart's defaults look for it
    up = (KIND / "up.sh").read_text()
    assert "helm upgrade --install kube-prometheus-stack " in up
    assert chart["labels"] == {"release": "kube-prometheus-stack"}
    namespace = lib('echo "$MONITORING_NS"').stdout.strip()
    assert chart["prometheusUrl"] == f"http://kube-prometheus-stack-prometheus.{namespace}:9090"
    kserve = yaml.safe_load((MANIFESTS / "prereqs" / "kserve-values.yaml").read_text())
    assert kserve["kserve"]["controller"]["deploymentMode"] == "Standard"
    cert_manager = yaml.safe_load((MANIFESTS / "prereqs" / "cert-manager-values.yaml").read_text())
    assert cert_manager == {"crds": {"enabled": True}}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_script_parses_and_stops_at_the_first_error(script: Path) -> None:
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.access(script, os.X_OK)
    code = [ln for ln in script.read_text().splitlines() if ln and not ln.startswith("#")]
    assert code[0] == "set -euo pipefail", script


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A PATH directory holding only what lib.sh needs before its checks."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "awk", "grep"):
        exe = shutil.which(tool)
        assert exe is not None
        (bin_dir / tool).symlink_to(exe)
    return bin_dir


def run_script(script: str, path: Path) -> Any:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(KIND / script)],
        capture_output=True,
        text=True,
        env={"PATH": str(path), "HOME": str(path.parent), "VIDREC_KUBECONFIG": "/nonexistent"},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("script", "tool", "hint"),
    [
        ("up.sh", "docker", "https://docs.docker.com/engine/install/"),
        ("down.sh", "kind", "go install sigs.k8s.io/kind@{KIND_VERSION}"),
        ("demo.sh", "kubectl", "https://kubernetes.io/docs/tasks/tools/"),
    ],
)
def test_a_missing_tool_is_named_with_how_to_install_it(
    bare_path: Path, script: str, tool: str, hint: str
) -> None:
    out = run_script(script, bare_path)
    assert out.returncode == 1
    assert f"error: {tool} is not installed" in out.stderr
    assert hint.format(**versions()) in out.stderr


def fake(bin_dir: Path, name: str, body: str) -> None:
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)


def test_a_stopped_docker_engine_is_reported_before_anything_runs(bare_path: Path) -> None:
    fake(bare_path, "docker", "exit 1")  # `docker info` fails: no engine
    out = run_script("up.sh", bare_path)
    assert out.returncode == 1 and "the Docker engine is not running" in out.stderr


def test_kind_down_warns_about_another_kind_release_and_deletes_nothing_absent(
    bare_path: Path,
) -> None:
    fake(bare_path, "kind", 'case "$1" in version) echo "kind v0.1.0 go1 linux/amd64";; esac')
    out = run_script("down.sh", bare_path)
    assert out.returncode == 0, out.stderr
    assert "warning: kind v0.1.0 found" in out.stderr
    assert "no kind cluster vidrec: nothing to delete" in out.stdout


@pytest.mark.parametrize("path", ROLLOUTS, ids=lambda p: p.stem)
def test_rollout_manifest_sets_the_version_and_nothing_else(path: Path) -> None:
    out = lib(f'rollout_manifest "$(rollout_file {path.stem})" 7')
    assert out.returncode == 0, out.stderr
    original, written = yaml.safe_load(path.read_text()), yaml.safe_load(out.stdout)
    assert written["spec"]["version"] == "7"
    written["spec"]["version"] = original["spec"]["version"]
    assert written == original


def test_rollout_manifest_refuses_what_is_not_a_version_number() -> None:
    out = lib('rollout_manifest "$(rollout_file demo-fast)" "v2"')
    assert out.returncode == 1 and "is not a registry version number" in out.stderr
    out = lib("rollout_file nope")
    assert out.returncode == 1
    assert "choose one of canary demo-fast shadow" in out.stderr


@pytest.mark.parametrize(
    ("log", "code", "said"),
    [
        ("ray: starting\n" + json.dumps({"registered": True, "version": 3}) + "\nbye\n", 0, "3"),
        (
            json.dumps({"registered": False, "gates": [{"name": "schema", "passed": False}]}),
            1,
            "failed gates: ['schema']",
        ),
        ("Traceback (most recent call last):\n", 1, "no --json summary line"),
    ],
    ids=["registered", "gate-failed", "crashed"],
)
def test_registered_version_reads_the_training_runs_summary(log: str, code: int, said: str) -> None:
    import sys

    out = lib("registered_version", env={"VIDREC_PYTHON": sys.executable}, stdin=log)
    assert out.returncode == code
    assert said in (out.stdout if code == 0 else out.stderr)


@pytest.mark.parametrize("path", ROLLOUTS, ids=lambda p: p.stem)
def test_each_example_is_a_modelrollout_of_the_kind_release(path: Path) -> None:
    doc, _ = example(path)
    assert doc["apiVersion"] == f"{crd.GROUP}/{crd.VERSION}" and doc["kind"] == crd.KIND
    assert doc["metadata"] == {"name": "vidrec"}  # one at a time; demo.sh chooses the namespace
    # Standard mode: serving's own router (KServe's canaryTrafficPercent needs Knative)
    assert doc["spec"]["target"] == {"inferenceService": "vidrec", "router": "app"}


def test_the_examples_are_a_default_canary_a_fast_demo_and_a_shadow_first_release() -> None:
    by = {p.stem: example(p)[1] for p in ROLLOUTS}
    assert set(by) == {"canary", "demo-fast", "shadow"}
    assert by["canary"] == RolloutPolicy()  # the defaults, written out
    assert by["demo-fast"].shadow.duration_s == 0
    assert by["shadow"].shadow.duration_s > 0 and by["shadow"].shadow.fraction < 1


@pytest.mark.parametrize("name", DEMO_ROLLOUTS)
def test_the_demo_policies_can_conclude_at_the_demos_traffic(name: str) -> None:
    """At `make kind-demo`'s rate every check has its minimum counts by the first canary
    step's end (else the analysis stays inconclusive and the rollout pauses)."""
    rate = float(lib('echo "$TRAFFIC_RATE"').stdout)
    k = 10  # `vidrec traffic --k` default: videos (impressions) per request
    p = example(MANIFESTS / "rollouts" / f"{name}.yaml")[1]
    a, first = p.analysis, p.steps[0] / 100
    assert rate * first * a.window_s >= 1.5 * a.min_requests
    assert rate * first * k * p.step_s >= 1.5 * a.min_impressions
    if p.shadow.duration_s:
        assert rate * p.shadow.fraction * a.window_s >= 1.5 * p.shadow.min_requests
    assert p.step_s * (len(p.steps) + 1) + p.shadow.duration_s <= 600  # a demo, not a wait


def test_the_makefile_has_the_kind_targets_with_help() -> None:
    makefile = (ROOT / "Makefile").read_text()
    phony = " ".join(re.findall(r"^\.PHONY:(.*)$", makefile, re.M)).split()
    for target, script in (("kind-up", "up"), ("kind-demo", "demo"), ("kind-down", "down")):
        assert re.search(rf"^{target}:[^\n]*## \S", makefile, re.M), target
        assert target in phony
        recipe = re.search(rf"^{target}:.*\n\t(.*)\n", makefile, re.M)
        assert recipe and recipe.group(1) == f"tools/kind/{script}.sh"


# The scripts' control flow, with fake docker/kind/helm/kubectl/vidrec (tests/kind_files.py):
# what they call, in which order, with which versions; no cluster is involved.
JOB = '{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": {}}'
KUBECTL_JOBS = [
    {"tool": "kubectl", "match": r"create job \S+ --from=\S+ --dry-run=client -o json",
     "stdout": JOB},
    {"tool": "kubectl", "match": r"^patch --local -f -", "stdin": "echo"},
    {"tool": "kubectl", "match": r"create -f -$", "stdin": "created.json"},
    {"tool": "kubectl", "match": r"get job \S+ -o jsonpath=\{range", "stdout": "Complete=True "},
]  # fmt: skip


def up_rules(existing: bool) -> list[dict[str, Any]]:
    return [
        {"tool": "docker", "match": "^image inspect", "stdout": "sha256:0123456789abcdef0123\n"},
        {"tool": "kind", "match": "^version", "stdout": f"kind {versions()['KIND_VERSION']} go\n"},
        {"tool": "kind", "match": "^get clusters", "stdout": "vidrec\n" if existing else ""},
        {"tool": "kubectl", "match": r"get job vidrec-train-initial -o jsonpath=\{\.status\.succ",
         "stdout": "1" if existing else ""},
        *KUBECTL_JOBS,
    ]  # fmt: skip


def test_kind_up_installs_the_pinned_prerequisites_then_the_chart_then_trains_v1(
    tmp_path: Path,
) -> None:
    from kind_files import FakeTools

    pin = {k: re.escape(v) for k, v in versions().items()}
    tools = FakeTools(tmp_path, up_rules(existing=False))
    out = tools.run("up.sh")
    assert out.returncode == 0, out.stderr
    helm = "^helm upgrade --install"
    order = [
        r"^docker build -t vidrec:kind ",
        rf"^kind create cluster --name vidrec --config \S+/kind-config.yaml "
        rf"--image {pin['KIND_NODE_IMAGE']} ",
        r"^kind load docker-image vidrec:kind-0123456789ab --name vidrec$",
        rf"{helm} cert-manager {pin['CERT_MANAGER_CHART']} "
        rf"--version {pin['CERT_MANAGER_VERSION']} ",
        rf"{helm} kserve-crd {pin['KSERVE_CHARTS']}/kserve-crd --version {pin['KSERVE_VERSION']} ",
        rf"{helm} kserve-resources \S+ --version {pin['KSERVE_VERSION']} .*kserve-values.yaml",
        rf"{helm} kube-prometheus-stack {pin['KUBE_PROMETHEUS_STACK_CHART']} "
        rf"--version {pin['KUBE_PROMETHEUS_STACK_VERSION']} --namespace monitoring ",
        r"^kubectl apply --server-side --force-conflicts -f \S+/charts/vidrec/crds/$",
        rf"{helm} vidrec \S+/charts/vidrec .*kind-values.yaml --set image.tag=kind-0123456789ab ",
        r'^kubectl patch --local .*"simulate","--scale","small"',
        r"^kubectl -n vidrec get job vidrec-simulate ",  # waited for before what reads its output
        r'^kubectl patch --local .*"features","materialize"',
        r"^kubectl -n vidrec create job vidrec-train-initial --from=cronjob/vidrec-retrain ",
        r"^kubectl -n vidrec get job vidrec-train-initial -o jsonpath=\{range",
        r"^kubectl -n vidrec delete pod -l serving.kserve.io/inferenceservice=vidrec ",
        r"^kubectl -n vidrec wait --for=condition=Ready inferenceservice/vidrec ",
    ]
    at = [tools.index(p) for p in order]
    assert at == sorted(at), "\n".join(tools.calls)
    grafana = "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80"
    assert grafana in out.stdout and "admin-password" in out.stdout


def test_kind_up_again_reuses_the_cluster_and_the_trained_model(tmp_path: Path) -> None:
    from kind_files import FakeTools

    tools = FakeTools(tmp_path, up_rules(existing=True))
    out = tools.run("up.sh")
    assert out.returncode == 0, out.stderr
    calls = "\n".join(tools.calls)
    assert "kind export kubeconfig --name vidrec" in calls and "kind create" not in calls
    assert "create job" not in calls and "delete pod" not in calls  # no retraining, no restart
    assert tools.index("^helm upgrade --install vidrec ") < tools.index("wait --for=condition")


def demo_rules(statuses: list[str]) -> list[dict[str, Any]]:
    """demo.sh's cluster: v2 registered by the training Job, then `statuses` (version, phase,
    weight, paused) of ModelRollout vidrec, one per poll."""
    summary = json.dumps({"registered": True, "version": 2, "alias": "challenger"})
    return [
        {"tool": "kubectl", "match": r"get modelrollout vidrec -o jsonpath=\{\.status\.phase\}$",
         "stdout": ""},
        {"tool": "kubectl", "match": r"logs job/vidrec-train-", "stdout": f"ray: ok\n{summary}\n"},
        {"tool": "kubectl", "match": r"apply -f -$", "stdin": "applied.yaml"},
        {"tool": "kubectl", "match": r"get modelrollout vidrec -o jsonpath=\{\.status\.version\}",
         "stdout": statuses},
        *KUBECTL_JOBS,
    ]  # fmt: skip


@pytest.mark.parametrize("rollout", ["demo-fast", "shadow"])
def test_kind_demo_releases_the_version_it_trained_and_follows_it_to_the_end(
    tmp_path: Path, rollout: str
) -> None:
    from kind_files import FakeTools

    # the status of the previous release comes first: ignored until the operator starts v2
    polls = ["1 promoted 0 false", "2 canary 10 false", "2 canary 25 false", "2 promoted 0 false"]
    tools = FakeTools(tmp_path, demo_rules(polls))
    out = tools.run("demo.sh", ROLLOUT=rollout)
    assert out.returncode == 0, out.stderr
    steps = [r"create job vidrec-traffic ", r"create job vidrec-train-\d+ ", r"apply -f -$",
             r"^vidrec rollout status --kube vidrec/vidrec$"]  # fmt: skip
    at = [tools.index(p) for p in steps]
    assert at == sorted(at)
    applied = yaml.safe_load((tmp_path / "applied.yaml").read_text())
    example_doc = yaml.safe_load((MANIFESTS / "rollouts" / f"{rollout}.yaml").read_text())
    assert applied["spec"]["version"] == "2"
    assert applied["spec"]["policy"] == example_doc["spec"]["policy"]
    assert "v2 canary, 10 % of users" in out.stdout and "v2 canary, 25 % of users" in out.stdout
    assert "v1" not in out.stdout.split("releasing v2")[1].split("==> v2: promoted")[0]
    assert not [c for c in tools.calls if "rollout rollback" in c]


def test_kind_demo_with_rollback_rolls_back_by_hand_once_in_canary(tmp_path: Path) -> None:
    from kind_files import FakeTools

    polls = ["2 shadow 0 false", "2 canary 10 false", "2 canary 10 false", "2 rolled_back 0 false"]
    tools = FakeTools(tmp_path, demo_rules(polls))
    out = tools.run("demo.sh", ROLLBACK="1")
    assert out.returncode == 0, out.stderr
    rollbacks = [c for c in tools.calls if "rollout rollback" in c]
    assert rollbacks == ["vidrec rollout rollback --kube vidrec/vidrec --wait 60"]
    assert "v2: rolled_back" in out.stdout


def test_kind_demo_stops_and_says_what_to_do_when_the_rollout_pauses(tmp_path: Path) -> None:
    from kind_files import FakeTools

    tools = FakeTools(tmp_path, demo_rules(["2 canary 10 false", "2 canary 10 true"]))
    out = tools.run("demo.sh")
    assert out.returncode == 1
    assert "v2 is paused for a human" in out.stderr
    assert "rollout resume|promote|rollback" in out.stderr
