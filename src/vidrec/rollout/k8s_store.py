"""The rollout object as a ModelRollout custom resource: people write the spec (`kubectl
apply`, `vidrec rollout ... --kube`), the operator writes the status subresource.

Our `Rollout.generation` is the object's `metadata.generation` (bumped by the API server
on every spec write) plus `status.writes` (bumped by us on every status write), so it
rises on every write, as the file store's does. A write also carries the resourceVersion
it read, so a concurrent writer makes it fail (Conflict) instead of being overwritten.

A ModelRollout whose status does not belong to its spec's version (new, or re-pointed at
another version) reads as None, "not started": the operator then starts it
(`local.start_rollout`), which stores the champion and the first status.
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from vidrec.config import parse
from vidrec.errors import Conflict, InvalidInput, NotFound, SchemaError
from vidrec.rollout.kube import get_object
from vidrec.rollout.state import Rollout, Spec

GROUP, VERSION, PLURAL = "vidrec.io", "v1alpha1", "modelrollouts"
_OURS = ("version", "writes")  # status keys of the store itself, not of Status


class ModelRolloutStore:
    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name

    @property
    def ref(self) -> str:
        return f"ModelRollout {self.namespace}/{self.name}"

    def read(self) -> dict[str, Any]:
        return get_object(self.objects, GROUP, VERSION, PLURAL, "ModelRollout", self.namespace,
                          self.name)  # fmt: skip

    def get(self) -> Rollout | None:
        return self.rollout_of(self.read())

    def rollout_of(self, obj: dict[str, Any]) -> Rollout | None:
        """The rollout an object read from the API server holds (None: not started)."""
        return _rollout(obj, self.ref)

    def put(self, rollout: Rollout, expected_generation: int | None) -> Rollout:
        obj = self.read()
        current = _rollout(obj, self.ref)
        have = current.generation if current else None
        if have != expected_generation:
            raise Conflict(
                f"{self.ref} is at generation {have}, not {expected_generation}: re-read it",
                current=have,
                expected=expected_generation,
            )
        spec = rollout.spec.model_dump(mode="json")
        if {k: obj["spec"].get(k) for k in spec} != spec:
            obj = self._write(lambda: self.objects.replace_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name,
                {**obj, "spec": {**obj["spec"], **spec}},
            ))  # fmt: skip
        status = rollout.status.model_dump(mode="json")
        if current is None or status != current.status.model_dump(mode="json"):
            writes = int((obj.get("status") or {}).get("writes", 0)) + 1
            body = {**obj, "status": {**status, "version": rollout.spec.version, "writes": writes}}
            obj = self._write(lambda: self.objects.replace_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body
            ))  # fmt: skip
        stored = _rollout(obj, self.ref)
        assert stored is not None  # its status was just written for this version
        return stored

    def _write(self, call: Any) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], call())
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{self.ref} changed meanwhile: re-read it") from None
            raise


def _rollout(obj: dict[str, Any], ref: str) -> Rollout | None:
    status = dict(obj.get("status") or {})
    spec = {k: v for k, v in obj["spec"].items() if k in Spec.model_fields}
    if status.get("version") != spec.get("version") or "phase" not in status:
        return None
    writes = int(status.get("writes", 0))
    for key in _OURS:
        status.pop(key, None)
    body = {"generation": int(obj["metadata"]["generation"]) + writes,
            "spec": spec, "status": status}  # fmt: skip
    return parse(Rollout, body, ref, SchemaError)


def parse_ref(ref: str) -> tuple[str, str]:
    """ "NAMESPACE/NAME" -> (namespace, name)."""
    namespace, _, name = ref.partition("/")
    if not namespace or not name or "/" in name:
        raise InvalidInput(f"--kube {ref!r}: expected NAMESPACE/NAME of a ModelRollout",
                           field="kube")  # fmt: skip
    return namespace, name


def point_at(store: ModelRolloutStore, version: str, policy: dict[str, Any] | None,
             target: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Ask the operator to release `version`: create the ModelRollout, or re-point a finished
    one (Conflict while its rollout is active). The operator starts it."""
    try:
        obj = store.read()
    except NotFound:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout",
                "metadata": {"name": store.name, "namespace": store.namespace},
                "spec": {"version": version, "target": target,
                         **({"policy": policy} if policy is not None else {})}}  # fmt: skip
        created = store.objects.create_namespaced_custom_object(
            GROUP, VERSION, store.namespace, PLURAL, body
        )
        return cast(dict[str, Any], created)
    current = _rollout(obj, store.ref)
    if current is not None and current.status.active:
        raise Conflict(f"the rollout of v{current.spec.version} is still "
                       f"{current.status.phase}: promote, abort or roll it back first")  # fmt: skip
    spec = {k: v for k, v in obj["spec"].items() if k not in ("champion", "request")}
    spec["version"] = version
    if policy is not None:
        spec["policy"] = policy
    return store._write(lambda: store.objects.replace_namespaced_custom_object(
        GROUP, VERSION, store.namespace, PLURAL, store.name, {**obj, "spec": spec}
    ))  # fmt: skip
