"""The cluster retrainer's pure parts: the Job made from a CronJob, and how a finished Job
maps to registered / rejected / failed. And the monitor keeping its event when the
retrainer cannot reach the cluster. No API server here (tests/integration has one)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from vidrec.config import MonitoringConfig
from vidrec.errors import NotFound, NotReady, VidrecError
from vidrec.monitoring.job_retrainer import (
    INSTANTIATE,
    REASON,
    REASON_CHARS,
    JobRetrainer,
    job_from_cronjob,
    job_outcome,
    unfinished_drift_job,
)
from vidrec.monitoring.monitor import DriftMonitor
from vidrec.ports import free_port

CRONJOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "demo-vidrec-retrain", "namespace": "vidrec", "uid": "u-1",
                 "labels": {"app.kubernetes.io/component": "pipeline"}},
    "spec": {
        "schedule": "0 3 * * *",
        "jobTemplate": {
            "metadata": {"labels": {"app.kubernetes.io/component": "pipeline"},
                         "annotations": {"team": "recs"}},
            "spec": {"backoffLimit": 1, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "train", "image": "v"}]}}},
        },
    },
}  # fmt: skip


def test_the_job_is_the_cronjobs_template_owned_by_it_with_the_reason() -> None:
    job = job_from_cronjob(CRONJOB, "sustained drift over 3 windows: country")
    meta = job["metadata"]
    assert (job["kind"], meta["generateName"]) == ("Job", "demo-vidrec-retrain-drift-")
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                        "name": "demo-vidrec-retrain", "uid": "u-1",
                                        "controller": True}]  # fmt: skip
    assert meta["annotations"] == {INSTANTIATE: "manual", "team": "recs",
                                   REASON: "sustained drift over 3 windows: country"}  # fmt: skip
    assert meta["labels"] == {"app.kubernetes.io/component": "pipeline"}
    assert job["spec"] == CRONJOB["spec"]["jobTemplate"]["spec"]
    assert "name" not in meta and "namespace" not in meta  # the API names it, in its namespace


def test_the_job_is_a_copy_and_a_long_reason_is_cut() -> None:
    before = copy.deepcopy(CRONJOB)
    job = job_from_cronjob(CRONJOB, "x" * 5000)
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    job["metadata"]["labels"]["new"] = "1"
    assert before == CRONJOB
    reason = job["metadata"]["annotations"][REASON]
    assert len(reason) == REASON_CHARS and reason.endswith("...")


def test_a_template_without_metadata_still_gives_a_job() -> None:
    bare = copy.deepcopy(CRONJOB)
    del bare["spec"]["jobTemplate"]["metadata"]
    meta = job_from_cronjob(bare, "r")["metadata"]
    assert meta["labels"] == {} and meta["annotations"] == {INSTANTIATE: "manual", REASON: "r"}


def made(name: str, created: str, owner: str = "u-1", reason: bool = True,
         done: bool = False) -> dict[str, Any]:  # fmt: skip
    """A Job as listed: made from a CronJob (its uid) by a monitor (with a reason) or not."""
    job = job_from_cronjob({**CRONJOB, "metadata": {"name": "c", "uid": owner}}, "drift")
    meta = {**job["metadata"], "name": name, "creationTimestamp": created}
    if not reason:
        meta["annotations"] = {}
    status = {"conditions": [{"type": "Complete", "status": "True"}]} if done else {}
    return {**job, "metadata": meta, "status": status}


def test_a_restarted_monitor_takes_up_the_newest_unfinished_drift_job() -> None:
    jobs = [made("old", "2026-01-01T00:00:00Z"), made("new", "2026-01-02T00:00:00Z"),
            made("done", "2026-01-03T00:00:00Z", done=True),
            made("scheduled", "2026-01-04T00:00:00Z", reason=False),
            made("foreign", "2026-01-05T00:00:00Z", owner="u-2")]  # fmt: skip
    assert unfinished_drift_job(CRONJOB, jobs) == "new"
    assert unfinished_drift_job(CRONJOB, jobs[2:]) is None  # finished, scheduled, not ours
    assert unfinished_drift_job(CRONJOB, []) is None


def job(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": {"conditions": [
        {"type": t, "status": s, "reason": r, "message": f"{r} happened"}
        for t, s, r in conditions]}}  # fmt: skip


def pod(code: int, finished: str, message: str | None = None) -> dict[str, Any]:
    state = {"exitCode": code, "finishedAt": finished, "message": message}
    return {"status": {"phase": "Failed" if code else "Succeeded",
                       "containerStatuses": [{"name": "train",
                                              "state": {"terminated": state}}]}}  # fmt: skip


FAILED = ("Failed", "True", "BackoffLimitExceeded")


@pytest.mark.parametrize(
    ("status", "pods", "want"),
    [
        (job(), [], None),
        (job(("SuccessCriteriaMet", "True", "CompletionsReached")), [], None),
        (job(("FailureTarget", "True", "PodFailurePolicy")), [pod(3, "t1")], None),
        (job(("Complete", "False", "x")), [], None),
        (job(("Complete", "True", "CompletionsReached")), [], "registered"),
        (job(("Failed", "True", "PodFailurePolicy")), [pod(3, "t1")], "rejected"),
        (job(FAILED), [pod(1, "t1", "Traceback...")], "failed"),
        (job(FAILED), [pod(3, "t1"), pod(137, "t2")], "failed"),  # the last failure decides
        (job(FAILED), [pod(137, "t1"), pod(3, "t2")], "rejected"),
        (job(("Failed", "True", "DeadlineExceeded")), [], "failed"),  # no pod left to ask
    ],
    ids=["running", "succeeding", "failing", "not-true", "complete", "gate", "crash",
         "gate-then-oom", "oom-then-gate", "deadline"],
)  # fmt: skip
def test_a_finished_job_maps_to_its_result(
    status: dict[str, Any], pods: list[dict[str, Any]], want: str | None
) -> None:
    got = job_outcome(status, pods)
    assert (got or {}).get("result") == want
    if got is not None:
        assert got["job"] == "j" and got["message"].endswith("happened")


def test_a_failure_reports_the_exit_code_and_the_logs_end() -> None:
    got = job_outcome(job(FAILED), [pod(1, "t1", "ValueError: bad data")])
    assert got == {"result": "failed", "job": "j", "condition": "BackoffLimitExceeded",
                   "message": "BackoffLimitExceeded happened", "exit_code": 1,
                   "termination_message": "ValueError: bad data"}  # fmt: skip


def test_an_unreachable_api_server_is_not_ready_naming_the_cronjob() -> None:
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg.retries = 0
    retrainer = JobRetrainer(client.ApiClient(cfg), "vidrec", "demo-vidrec-retrain")
    with pytest.raises(NotReady, match=r"CronJob vidrec/demo-vidrec-retrain: .* unreachable"):
        retrainer.start("drift")
    assert not retrainer.running and retrainer.poll() is None  # nothing was started


class Retrainer:
    """Scripted: `fail` raises that error from start and poll until cleared."""

    def __init__(self) -> None:
        self.fail: VidrecError | None = None
        self.started: list[str] = []
        self.adopts = False  # start takes up a Job an earlier monitor process made

    @property
    def running(self) -> bool:
        return False

    def start(self, reason: str) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.started.append(reason)
        return {"job": "j", "adopted": True} if self.adopts else {"job": "j"}

    def poll(self) -> dict[str, Any] | None:
        if self.fail is not None:
            raise self.fail
        return None


class NoServing:
    def query(self, promql: str, at: float | None = None) -> list[Any]:
        return []

    def is_online(self) -> bool:
        return True


def monitor(tmp_path: Path, retrainer: Retrainer) -> DriftMonitor:
    cfg = MonitoringConfig(sustained_windows=2, retrain_cooldown_s=60)
    return DriftMonitor(cfg, NoServing(), None, None, retrainer, tmp_path / "events.jsonl",  # type: ignore[arg-type]
                        clock=lambda: 1000.0)  # fmt: skip


def test_an_unreadable_retraining_is_logged_in_the_runs_event(tmp_path: Path) -> None:
    r = Retrainer()
    r.fail = NotReady("reading Job vidrec/j: the Kubernetes API is unreachable")
    event = monitor(tmp_path, r).run_once()
    assert event["result"] == "no_data"
    assert event["retraining_error"]["message"].startswith("reading Job vidrec/j")
    logged = json.loads((tmp_path / "events.jsonl").read_text())
    assert logged["retraining_error"]["error"] == "not_ready"


def test_a_retraining_that_cannot_start_is_retried_next_run(tmp_path: Path) -> None:
    r = Retrainer()
    m = monitor(tmp_path, r)
    m.streaks[("champion", "1")] = {"country": 2}
    r.fail = NotFound("reading CronJob vidrec/demo-vidrec-retrain: not found")
    decision = m._maybe_retrain(1000.0)
    assert decision["started"] is False and "vidrec/demo-vidrec-retrain" in str(decision["error"])
    assert m.last_retrain is None  # no cooldown for a retraining that never ran
    r.fail = None
    assert m._maybe_retrain(1001.0)["started"] is True
    assert r.started == ["sustained drift over 2 windows: country"]
    errors = m.metrics.registry.get_sample_value("vidrec_retraining_total", {"result": "error"})
    assert errors == 1.0


def test_a_job_taken_up_after_a_restart_is_counted_apart_from_new_runs(tmp_path: Path) -> None:
    r = Retrainer()
    r.adopts = True
    m = monitor(tmp_path, r)
    m.streaks[("champion", "1")] = {"country": 2}
    decision = m._maybe_retrain(1000.0)
    assert decision["started"] is True and decision["run"]["adopted"] is True
    assert m.last_retrain == 1000.0  # the cooldown runs from now: a Job is running

    def count(result: str) -> float | None:
        return m.metrics.registry.get_sample_value("vidrec_retraining_total", {"result": result})

    assert (count("adopted"), count("started")) == (1.0, None)
