"""A real Kubernetes control plane for tests, on loopback ports, built by
`tools/k8s/build.sh` (cached): etcd, kube-apiserver (RBAC on, a static token in
`system:masters`), kube-controller-manager, kube-scheduler, and kwok playing the kubelet of
one fake node, so Deployments roll out and their pods become Running and Ready (no
container runs). Every process logs to the work directory, and a failure to start quotes
the end of its log.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import yaml
from kubernetes import client

from vidrec.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "vidrec-test-token"
CRDS = ROOT.parent / "shared" / "crds"
FAKE = "kwok.x-k8s.io/node"
# what Deployments, Jobs, CronJobs, volumes and deletes need; node-lifecycle lifts the
# not-ready taint every new Node gets
CONTROLLERS = ",".join(
    [
        "deployment-controller",
        "replicaset-controller",
        "job-controller",
        "cronjob-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "root-ca-certificate-publisher-controller",
        "node-lifecycle-controller",
        "persistentvolume-binder-controller",
        "pod-garbage-collector-controller",
    ]
)


def tools_dir() -> Path:
    """The directory holding the built binaries (builds them the first time, minutes)."""
    out = subprocess.run(
        [str(ROOT / "tools" / "k8s" / "build.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


class ControlPlane:
    def __init__(self, workdir: Path, bin_dir: Path) -> None:
        self.dir = workdir
        self.bin = bin_dir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = workdir / "kubeconfig"
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self) -> ControlPlane:
        self.dir.mkdir(parents=True, exist_ok=True)
        etcd_port, peer_port = free_port(), free_port()
        etcd = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                "--data-dir",
                str(self.dir / "etcd"),
                "--listen-client-urls",
                etcd,
                "--advertise-client-urls",
                etcd,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--log-level",
                "warn",
                "--unsafe-no-fsync",
            ],
        )
        key = self.dir / "sa.key"
        _write_rsa_key(key)  # signs service-account tokens
        tokens = self.dir / "tokens.csv"
        tokens.write_text(f'{TOKEN},vidrec-admin,uid-1,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'pki'}",
                # an Endpoints object may not hold a loopback address (k8s's own test server)
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={key}",
                f"--service-account-signing-key-file={key}",
                f"--token-auth-file={tokens}",
                "--anonymous-auth=false",
                "--authorization-mode=RBAC",
            ],
        )
        self._await_ready(60.0)
        self._write_kubeconfig()
        kc = f"--kubeconfig={self.kubeconfig}"
        self._spawn(
            "kube-controller-manager",
            [
                kc,
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={key}",
                f"--root-ca-file={self.dir / 'pki' / 'apiserver.crt'}",
            ],
        )
        self._spawn("kube-scheduler", [kc, "--leader-elect=false", "--secure-port=0"])
        self._spawn(
            "kwok",
            [
                kc,
                f"--config={self.bin / 'kwok-stage' / 'fast'}",
                f"--manage-nodes-with-annotation-selector={FAKE}=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.244.255.1",
                "-v=WARN",
            ],
        )
        self._add_node("kwok-node-0", 60.0)
        return self

    def api_client(self) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = self.url
        cfg.api_key = {"authorization": f"Bearer {TOKEN}"}
        cfg.ssl_ca_cert = str(self.dir / "pki" / "apiserver.crt")
        return client.ApiClient(cfg)

    def run(
        self, tool: str, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl` or `helm` against this cluster (helm with its own cache and config)."""
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.dir), "KUBECONFIG": str(self.kubeconfig)}
        for kind in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{kind}_HOME"] = str(self.dir / "helm" / kind.lower())
        out = subprocess.run(
            [str(self.bin / tool), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
            )
        return out

    def namespace(self, name: str) -> str:
        client.CoreV1Api(self.api_client()).create_namespace({"metadata": {"name": name}})
        return name

    def create_inference_service(self, namespace: str, name: str, version: str) -> None:
        """A KServe InferenceService whose predictor serves registry `version` (no KServe
        controller runs: nothing acts on it)."""
        container = {"name": "kserve-container", "image": "vidrec:test",
                     "env": [{"name": "VIDREC_MODEL_VERSION", "value": version}]}  # fmt: skip
        body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": name},
                "spec": {"predictor": {"containers": [container]}}}  # fmt: skip
        client.CustomObjectsApi(self.api_client()).create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", body
        )

    def apply_crds(self, files: Sequence[Path]) -> None:
        """Create the CRDs in `files` and wait until each is Established."""
        if not files:  # ../shared/crds lives beside the project root, not inside it
            raise FileNotFoundError(f"no CRD files given (is {CRDS} there?)")
        ext = client.ApiextensionsV1Api(self.api_client())
        names = []
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    _create_or_replace(ext, doc)
                    names.append(doc["metadata"]["name"])
        deadline = time.monotonic() + 30
        for name in names:
            while not _established(ext.read_custom_resource_definition(name)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} was not Established in 30 s")
                time.sleep(0.1)

    def _add_node(self, name: str, timeout_s: float) -> None:
        """A fake node (kwok heartbeats it); returns once it is Ready and schedulable."""
        core = client.CoreV1Api(self.api_client())
        core.create_node(
            {
                "metadata": {
                    "name": name,
                    "annotations": {FAKE: "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                },
            }
        )
        deadline = time.monotonic() + timeout_s
        while True:
            node = core.read_node(name)
            ready = any(
                c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])
            )
            if ready and not node.spec.taints:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"node {name} not Ready and untainted in {timeout_s:g} s "
                    f"(taints {node.spec.taints}):\n{self.log_tail('kwok')}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        for _, proc, log in reversed(self._procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self._procs.clear()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen([str(self.bin / name), *args], stdout=log, stderr=subprocess.STDOUT)
        self._procs.append((name, proc, log))

    def _await_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while True:
            for name, proc, _ in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")
            try:
                r = httpx.get(f"{self.url}/readyz", headers=headers, verify=False, timeout=2)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"kube-apiserver not ready in {timeout_s:g} s:\n"
                    f"{self.log_tail('kube-apiserver')}"
                )
            time.sleep(0.2)

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.dir / "pki" / "apiserver.crt"),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            "current-context": "test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))


def _create_or_replace(ext: client.ApiextensionsV1Api, crd: dict[str, Any]) -> None:
    """Several test modules install the same CRD: the last one wins, nobody fails."""
    try:
        ext.create_custom_resource_definition(crd)
    except client.ApiException as e:
        if e.status != 409:
            raise
        have = ext.read_custom_resource_definition(crd["metadata"]["name"])
        crd = {**crd, "metadata": {**crd["metadata"],
                                   "resourceVersion": have.metadata.resource_version}}  # fmt: skip
        ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)


def _write_rsa_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def _established(crd: client.V1CustomResourceDefinition) -> bool:
    conds = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conds)


@contextlib.contextmanager
def operator_running(
    k8s: ControlPlane, op: Any, interval_s: float = 0.25, peering: str | None = None
) -> Iterator[None]:
    """`vidrec.rollout.kopf_host.run(op)` in a thread, logged in to `k8s`, until the block ends
    (with `peering`: one replica among those sharing that KopfPeering)."""
    import kopf

    from vidrec.rollout.kopf_host import run

    stop, ready = threading.Event(), threading.Event()
    login = kopf.ConnectionInfo(server=k8s.url, token=TOKEN, scheme="Bearer",
                                ca_path=str(k8s.dir / "pki" / "apiserver.crt"))  # fmt: skip
    kwargs = {"interval_s": interval_s, "connection": login, "stop": stop, "ready": ready,
              "peering": peering}  # fmt: skip
    thread = threading.Thread(target=run, args=(op,), kwargs=kwargs, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("kopf did not start in 30 s")
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
