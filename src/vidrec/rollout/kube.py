"""Small Kubernetes helpers the rollout's cluster parts share (ModelRollout store,
KServe router, operator CLI)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vidrec.errors import NotFound, NotReady


def kube_api(kubeconfig: Path | None = None) -> client.ApiClient:
    """A client for the cluster `kubeconfig`, else `$KUBECONFIG` (or ~/.kube/config, or
    in-cluster) points at. A file given is exported as `$KUBECONFIG`: kopf's own login
    reads it too."""
    from kubernetes import config

    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except config.ConfigException as outside:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            raise NotReady(
                f"no Kubernetes cluster to talk to: {outside} (set $KUBECONFIG, or --kubeconfig "
                "where the verb takes it; in a pod, its service account is used)",
                kubeconfig=os.environ.get("KUBECONFIG", "~/.kube/config"),
            ) from outside
    return client.ApiClient()


def get_object(
    objects: client.CustomObjectsApi, group: str, version: str, plural: str, kind: str,
    namespace: str, name: str,
) -> dict[str, Any]:  # fmt: skip
    """A namespaced custom object; NotFound (404) naming it when it does not exist."""
    try:
        obj = objects.get_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as e:
        if e.status == 404:
            raise NotFound(f"{kind} {namespace}/{name} does not exist",
                           namespace=namespace, name=name) from None  # fmt: skip
        raise
    return cast(dict[str, Any], obj)
