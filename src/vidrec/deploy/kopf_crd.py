"""kopf's KopfPeering CRD (namespaced), which its peering (our leader election) needs:
operators of one peering name see each other's heartbeats in the object's status, and only
the highest priority acts. Shape as in kopf's docs (peering.yaml); kopf writes `status`
through the main resource, so there is no status subresource."""

from __future__ import annotations

from typing import Any


def crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "kopfpeerings.kopf.dev"},
        "spec": {
            "scope": "Namespaced",
            "group": "kopf.dev",
            "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
