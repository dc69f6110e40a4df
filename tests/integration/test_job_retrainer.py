"""Retraining as a Job, against a real API server: the chart's retraining CronJob and the
monitor's ServiceAccount and Role (rendered by helm), and `JobRetrainer` acting as that
ServiceAccount. kwok's fast stages run and complete the Job's pod on the fake node (no
container runs); the gate-rejected case keeps the pod off the node and sets its status by
hand, since kwok only ever completes pods with exit code 0."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from helpers import wait_for
from k8s_cluster import ROOT, ControlPlane
from vidrec.errors import ConfigError, NotFound
from vidrec.monitoring.job_retrainer import INSTANTIATE, JOB_NAME, REASON, JobRetrainer

pytestmark = pytest.mark.integration

CHART = ROOT / "charts" / "vidrec"
CRONJOB = "demo-vidrec-retrain"
SHOWN = ("config", "retrain", "monitor")
KEPT = {"ConfigMap", "PersistentVolumeClaim", "CronJob", "ServiceAccount", "Role", "RoleBinding"}


@pytest.fixture(scope="module")
def ns(k8s: ControlPlane) -> str:
    """A namespace holding the chart's CronJob, its volume claim (bound) and the monitor's
    ServiceAccount, Role and RoleBinding."""
    ns = k8s.namespace("retrain")
    shown = [a for t in SHOWN for a in ("--show-only", f"templates/{t}.yaml")]
    out = k8s.run("helm", "template", "demo", str(CHART), "-n", ns, *shown).stdout
    objects = [o for o in yaml.safe_load_all(out) if o and o["kind"] in KEPT]
    pv = {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
          "hostPath": {"path": str(k8s.dir / "retrain-pv")},
          "claimRef": {"namespace": ns, "name": "demo-vidrec-data"}}  # fmt: skip
    core = client.CoreV1Api(k8s.api_client())
    core.create_persistent_volume({"metadata": {"name": "retrain-data"}, "spec": pv})
    k8s.run("kubectl", "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all(objects))
    return ns


def as_monitor(k8s: ControlPlane, ns: str) -> client.ApiClient:
    """An API client acting as the monitor's ServiceAccount (what its pod's token can do)."""
    api = k8s.api_client()
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{ns}:demo-vidrec-monitor")
    return api


def start_unscheduled(
    k8s: ControlPlane, ns: str, retrainer: JobRetrainer, reason: str
) -> dict[str, Any]:
    """`retrainer.start` while the CronJob's pods are pinned to no node: its pod stays
    pending until the test plays the kubelet (kwok only ever completes pods with 0)."""
    batch = client.BatchV1Api(k8s.api_client())

    def pin(nodes: dict[str, str] | None) -> None:  # a merge patch: None removes it
        pod = {"spec": {"nodeSelector": nodes}}
        batch.patch_namespaced_cron_job(CRONJOB, ns, {"spec": {"jobTemplate": {"spec": {
            "template": pod}}}})  # fmt: skip

    pin({"vidrec.io/nowhere": "x"})
    try:
        return retrainer.start(reason)
    finally:
        pin(None)


def test_a_drift_job_runs_from_the_cronjob_and_reports_once(k8s: ControlPlane, ns: str) -> None:
    retrainer = JobRetrainer(as_monitor(k8s, ns), ns, CRONJOB)
    reason = "sustained drift over 3 windows: country, predictions"
    run = retrainer.start(reason)
    name = run["job"]
    assert name.startswith(f"{CRONJOB}-drift-") and run["namespace"] == ns
    admin = k8s.api_client()
    cronjob = client.BatchV1Api(admin).read_namespaced_cron_job(CRONJOB, ns)
    job = client.BatchV1Api(admin).read_namespaced_job(name, ns)
    [owner] = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "CronJob", CRONJOB, cronjob.metadata.uid, True)  # fmt: skip
    assert job.metadata.annotations[REASON] == reason
    assert job.metadata.annotations[INSTANTIATE] == "manual"
    assert job.metadata.labels["app.kubernetes.io/component"] == "pipeline"
    assert job.spec.pod_failure_policy.rules[0].on_exit_codes.values == [3]

    wait_for(f"Job {name} to finish", lambda: not retrainer.running)
    pods = client.CoreV1Api(admin).list_namespaced_pod(ns, label_selector=f"{JOB_NAME}={name}")
    assert [(p.spec.node_name, p.status.phase) for p in pods.items] == [
        ("kwok-node-0", "Succeeded")]  # fmt: skip
    result = retrainer.poll()
    assert result is not None and (result["result"], result["job"]) == ("registered", name)
    assert retrainer.poll() is None and not retrainer.running


def test_a_gate_failure_is_rejected_without_a_second_try(k8s: ControlPlane, ns: str) -> None:
    """The CronJob's pods pinned to no node for a while, so the test plays the kubelet: the
    train container exits 3. The chart's podFailurePolicy fails the Job at once."""
    batch, core = client.BatchV1Api(k8s.api_client()), client.CoreV1Api(k8s.api_client())
    retrainer = JobRetrainer(as_monitor(k8s, ns), ns, CRONJOB)
    name = start_unscheduled(k8s, ns, retrainer, "sustained drift")["job"]
    selector = f"{JOB_NAME}={name}"

    def pods() -> list[client.V1Pod]:
        return core.list_namespaced_pod(ns, label_selector=selector).items

    [pod] = wait_for("the Job's pod", pods)
    at = "2026-01-01T00:00:00Z"
    terminated = {"exitCode": 3, "reason": "Error", "message": "gate ndcg@10 failed",
                  "startedAt": at, "finishedAt": at}  # fmt: skip
    train = {"name": "train", "image": "vidrec:0.1.0", "imageID": "", "ready": False,
             "restartCount": 0, "state": {"terminated": terminated}}  # fmt: skip
    status = {"phase": "Failed", "containerStatuses": [train]}
    core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": status})

    result = wait_for(f"Job {name} to fail", retrainer.poll)
    assert result["result"] == "rejected" and result["condition"] == "PodFailurePolicy"
    assert (result["exit_code"], result["termination_message"]) == (3, "gate ndcg@10 failed")
    assert len(pods()) == 1  # no second try
    cronjob = batch.read_namespaced_cron_job(CRONJOB, ns)
    assert cronjob.spec.job_template.spec.template.spec.node_selector is None


def test_a_restarted_monitor_takes_up_its_running_job(k8s: ControlPlane, ns: str) -> None:
    """The monitor restarts while its Job's pod is pending: the new process, which knows
    nothing of it, takes that Job up instead of starting a second retraining."""
    batch = client.BatchV1Api(k8s.api_client())
    first = JobRetrainer(as_monitor(k8s, ns), ns, CRONJOB)
    name = start_unscheduled(k8s, ns, first, "sustained drift")["job"]
    try:
        before = {j.metadata.name for j in batch.list_namespaced_job(ns).items}
        restarted = JobRetrainer(as_monitor(k8s, ns), ns, CRONJOB)
        assert not restarted.running  # a new process knows of no Job until it looks
        run = restarted.start("sustained drift, after a restart")
        assert (run["job"], run.get("adopted")) == (name, True)
        assert {j.metadata.name for j in batch.list_namespaced_job(ns).items} == before
        assert restarted.running and restarted.poll() is None
    finally:  # later tests must not find it running
        batch.delete_namespaced_job(name, ns, propagation_policy="Background")


def test_a_missing_cronjob_is_named(k8s: ControlPlane, ns: str) -> None:
    with pytest.raises(NotFound, match=f"CronJob {ns}/no-such-cronjob: not found"):
        JobRetrainer(k8s.api_client(), ns, "no-such-cronjob").start("drift")


@pytest.mark.parametrize(
    ("where", "cronjob"), [("retrain", "no-such-cronjob"), ("default", CRONJOB)],
    ids=["another-cronjob", "another-namespace"],
)  # fmt: skip
def test_the_monitor_may_use_only_its_own_cronjob(
    k8s: ControlPlane, ns: str, where: str, cronjob: str
) -> None:
    with pytest.raises(ConfigError, match=f"CronJob {where}/{cronjob}: forbidden") as e:
        JobRetrainer(as_monitor(k8s, ns), where, cronjob).start("drift")
    assert "cannot get resource" in e.value.details["api"]
