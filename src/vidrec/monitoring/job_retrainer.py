"""Retraining in a cluster: a Job made from the release's retraining CronJob, as
`kubectl create job --from=cronjob/NAME` makes it (same pod, volumes and gates).

The Job is owned by the CronJob, so the CronJob's history limits prune it and deleting
the release deletes it. The monitor may only get that CronJob, create and read Jobs and
list their pods (the exit code: 3 is a gate that failed); it never reads logs or Secrets.
A monitor that restarts while its Job runs takes that Job up rather than start another.
This module never loads a kubeconfig: the caller hands it an API client.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from vidrec.errors import ConfigError, NotFound, NotReady, VidrecError

log = logging.getLogger(__name__)

REASON = "vidrec.io/retrain-reason"
INSTANTIATE = "cronjob.kubernetes.io/instantiate"
JOB_NAME = "batch.kubernetes.io/job-name"  # the label the Job controller puts on its pods
REASON_CHARS = 1024  # a reason lists drifting features: keep the annotation readable
REJECTED = 3  # `vidrec train`'s exit code when a registration gate failed
TIMEOUT_S = 30.0


def job_from_cronjob(cronjob: dict[str, Any], reason: str) -> dict[str, Any]:
    """The Job `kubectl create job --from=cronjob/NAME` would create, annotated with why."""
    meta, template = cronjob["metadata"], cronjob["spec"]["jobTemplate"]
    tmeta = template.get("metadata") or {}
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 3] + "..."
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"],
             "uid": meta["uid"], "controller": True}  # fmt: skip
    annotations = {INSTANTIATE: "manual", **(tmeta.get("annotations") or {}), REASON: reason}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": f"{meta['name']}-drift-", "annotations": annotations,
                     "labels": dict(tmeta.get("labels") or {}), "ownerReferences": [owner]},
        "spec": copy.deepcopy(template["spec"]),
    }  # fmt: skip


def unfinished_drift_job(cronjob: dict[str, Any], jobs: list[dict[str, Any]]) -> str | None:
    """The newest Job a monitor made from this CronJob (owned by it, with a reason) that
    has not finished: a monitor that restarts takes it up instead of starting a second."""
    uid = cronjob["metadata"]["uid"]
    mine = [
        j for j in jobs
        if REASON in (j["metadata"].get("annotations") or {})
        and any(o.get("uid") == uid for o in j["metadata"].get("ownerReferences") or [])
        and finished(j) is None
    ]  # fmt: skip
    newest = max(mine, key=lambda j: str(j["metadata"].get("creationTimestamp")), default=None)
    return None if newest is None else str(newest["metadata"]["name"])


def finished(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's true Complete or Failed condition; None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def job_outcome(job: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """registered (Complete: the pipeline exits 0 only once it registered), rejected (the
    last container to fail exited 3: a gate failed), failed (anything else); None while
    the Job runs."""
    cond = finished(job)
    if cond is None:
        return None
    out = {"job": job["metadata"]["name"], "condition": cond.get("reason"),
           "message": cond.get("message")}  # fmt: skip
    if cond["type"] == "Complete":
        return {"result": "registered", **out}
    last = _last_failure(pods)
    code = last.get("exitCode")
    result = "rejected" if code == REJECTED else "failed"
    # with terminationMessagePolicy FallbackToLogsOnError, the end of the pod's log
    return {"result": result, **out, "exit_code": code, "termination_message": last.get("message")}


def _last_failure(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The terminated state of the container that failed last (empty when none did)."""
    states = [
        s["state"]["terminated"]
        for p in pods
        for s in (p.get("status") or {}).get("containerStatuses") or []
        if ((s.get("state") or {}).get("terminated") or {}).get("exitCode", 0) != 0
    ]
    return max(states, key=lambda t: str(t.get("finishedAt") or ""), default={})


class JobRetrainer:
    """One retraining at a time, as a Job of `namespace` made from CronJob `cronjob`."""

    def __init__(self, api: client.ApiClient, namespace: str, cronjob: str) -> None:
        self.api, self.namespace, self.cronjob = api, namespace, cronjob
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self._job: str | None = None
        self._result: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        if self._job is None:
            return False
        try:
            return self._check() is None
        except VidrecError as exc:  # unknown is not finished: never start a second one on it
            log.warning("%s; taking the retraining as still running", exc.message)
            return True

    def start(self, reason: str) -> dict[str, Any]:
        where = f"CronJob {self.namespace}/{self.cronjob}"
        cronjob = self._plain(self._call(f"reading {where}", self.batch.read_namespaced_cron_job,
                                         self.cronjob, self.namespace))  # fmt: skip
        run = {"namespace": self.namespace, "cronjob": self.cronjob}
        listed = self._call(f"listing the Jobs of {where}", self.batch.list_namespaced_job,
                            self.namespace)  # fmt: skip
        earlier = unfinished_drift_job(cronjob, self._plain(listed)["items"])
        if earlier is not None:  # started before this process (re)started: one at a time
            self._job, self._result = earlier, None
            return {"job": earlier, **run, "adopted": True}
        body = job_from_cronjob(cronjob, reason)
        job = self._call(f"creating a Job from {where}", self.batch.create_namespaced_job,
                         self.namespace, body)  # fmt: skip
        self._job, self._result = job.metadata.name, None
        return {"job": self._job, **run}

    def poll(self) -> dict[str, Any] | None:
        if self._job is None:
            return None
        result = self._check()
        if result is not None:
            self._job = self._result = None
        return result

    def _check(self) -> dict[str, Any] | None:
        """The started Job's result (read once it is there); None while it runs."""
        if self._result is None and self._job is not None:
            self._result = self._read(self._job)
        return self._result

    def _read(self, name: str) -> dict[str, Any] | None:
        where = f"Job {self.namespace}/{name}"
        try:
            job = self._call(f"reading {where}", self.batch.read_namespaced_job, name,
                             self.namespace)  # fmt: skip
        except NotFound:  # deleted (by hand, or pruned) before anyone read how it ended
            return {"result": "failed", "job": name,
                    "message": f"{where} was deleted before its result was read"}  # fmt: skip
        job = self._plain(job)
        pods: list[dict[str, Any]] = []
        if (finished(job) or {}).get("type") == "Failed":  # only a failure needs the exit code
            listed = self._call(f"listing the pods of {where}", self.core.list_namespaced_pod,
                                self.namespace, label_selector=f"{JOB_NAME}={name}")  # fmt: skip
            pods = self._plain(listed)["items"]
        return job_outcome(job, pods)

    def _plain(self, obj: Any) -> dict[str, Any]:
        """A client model as the API's JSON (camelCase keys): what the pure functions read."""
        out: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return out

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:  # bounded: a hung API server must not stall the monitor's loop
            return method(*args, _request_timeout=TIMEOUT_S, **kwargs)
        except (ApiException, HTTPError) as e:
            raise _error(e, what, self.namespace) from None


def _error(e: Exception, what: str, namespace: str) -> VidrecError:
    """An API failure as an error that says what was attempted and what to fix."""
    if not isinstance(e, ApiException):  # no answer at all: connection refused, timeout
        return NotReady(f"{what}: the Kubernetes API is unreachable ({e})", namespace=namespace)
    said = _message(e)
    if e.status == 404:
        return NotFound(f"{what}: not found", namespace=namespace, api=said)
    if e.status in (401, 403):
        hint = "the monitor's ServiceAccount needs its token and the chart's monitor Role"
        return ConfigError(f"{what}: forbidden ({e.status}); {hint}", namespace=namespace, api=said)
    return NotReady(f"{what}: the Kubernetes API answered {e.status} {e.reason}",
                    namespace=namespace, api=said)  # fmt: skip


def _message(e: ApiException) -> str:
    """The API server's own explanation (a Status object's message), else the raw body."""
    try:
        return str(json.loads(e.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(e.body or e.reason)
