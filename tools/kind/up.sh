#!/usr/bin/env bash
# `make kind-up`: vidrec on a local kind cluster, serving a trained model.
#   build the image -> create (or reuse) the cluster -> load the image -> cert-manager,
#   KServe (Standard mode), kube-prometheus-stack -> the vidrec chart -> simulate a platform,
#   materialise its features and train v1 in the cluster -> wait until it serves.
# Needs Docker, kind, kubectl, helm and the internet (images, charts). Re-running it reuses
# the cluster, upgrades every release in place and trains only when nothing was trained yet.
# Versions: manifests/versions.env; kubeconfig: out/kind/kubeconfig.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_docker
need_kind
need_kubectl
need_helm
mkdir -p "$(dirname "$KUBECONFIG")"

say "building the image (Dockerfile; the first build takes several minutes)"
docker build -t "$IMAGE_REPO:kind" "$KIND_ROOT"
image_id=$(docker image inspect --format '{{.Id}}' "$IMAGE_REPO:kind")
TAG=kind-${image_id#sha256:}
TAG=${TAG:0:17} # kind- and 12 hex digits: a new build, a new tag, so the pods roll
docker tag "$IMAGE_REPO:kind" "$IMAGE_REPO:$TAG"

if cluster_exists; then
	say "reusing kind cluster $CLUSTER"
	kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
else
	say "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
	kind create cluster --name "$CLUSTER" --config "$MANIFESTS/kind-config.yaml" \
		--image "$KIND_NODE_IMAGE" --kubeconfig "$KUBECONFIG" --wait 180s
fi

say "loading $IMAGE_REPO:$TAG into the node"
kind load docker-image "$IMAGE_REPO:$TAG" --name "$CLUSTER"

say "cert-manager $CERT_MANAGER_VERSION"
helm upgrade --install cert-manager "$CERT_MANAGER_CHART" --version "$CERT_MANAGER_VERSION" \
	--namespace cert-manager --create-namespace \
	-f "$MANIFESTS/prereqs/cert-manager-values.yaml" --wait --timeout 10m

say "KServe $KSERVE_VERSION (Standard mode)"
helm upgrade --install kserve-crd "$KSERVE_CHARTS/kserve-crd" --version "$KSERVE_VERSION" \
	--namespace "$KSERVE_NS" --create-namespace --wait --timeout 5m
helm upgrade --install kserve-resources "$KSERVE_CHARTS/kserve-resources" --version "$KSERVE_VERSION" \
	--namespace "$KSERVE_NS" -f "$MANIFESTS/prereqs/kserve-values.yaml" --wait --timeout 10m

say "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (Prometheus Operator, Prometheus, Grafana)"
helm upgrade --install kube-prometheus-stack "$KUBE_PROMETHEUS_STACK_CHART" \
	--version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace "$MONITORING_NS" --create-namespace \
	-f "$MANIFESTS/prereqs/kube-prometheus-stack-values.yaml" --wait --timeout 15m

say "the vidrec chart (release $RELEASE, namespace $NS, image $IMAGE_REPO:$TAG)"
# Helm installs a chart's crds/ only once; applying them keeps an upgraded CRD current
kubectl apply --server-side --force-conflicts -f "$KIND_ROOT/charts/vidrec/crds/"
# no --wait: the model server becomes ready only once a model is trained, below
helm upgrade --install "$RELEASE" "$KIND_ROOT/charts/vidrec" --namespace "$NS" --create-namespace \
	-f "$MANIFESTS/kind-values.yaml" --set "image.tag=$TAG" --timeout 10m

if [[ $(k get job "$RELEASE-train-initial" -o jsonpath='{.status.succeeded}' 2>/dev/null) == 1 ]]; then
	say "v1 was trained by an earlier run (job $RELEASE-train-initial): keeping the registry"
else
	say "simulating a platform ($SIM_SCALE) into the shared volume"
	k delete job "$RELEASE-simulate" "$RELEASE-materialize" "$RELEASE-train-initial" \
		--ignore-not-found --wait
	simulate_job | k create -f -
	wait_job "$RELEASE-simulate" 900

	say "materialising the online store and training v1 (the retraining CronJob's command)"
	materialize_job | k create -f -
	train_job "$RELEASE-train-initial" | k create -f -
	wait_job "$RELEASE-materialize" 900
	wait_job "$RELEASE-train-initial" 1800
	# the model server and the monitor started before there was a model (and an online
	# store): restart them rather than wait out their crash-loop back-off
	k delete pod -l "serving.kserve.io/inferenceservice=$RELEASE" --ignore-not-found
	k delete pod -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=monitor" \
		--ignore-not-found
fi

say "waiting for the model server, the operator and the drift monitor"
k wait --for=condition=Ready "inferenceservice/$RELEASE" --timeout=15m
k rollout status "deployment/$RELEASE-operator" --timeout=5m
k rollout status "deployment/$RELEASE-monitor" --timeout=5m

cat <<EOF

vidrec serves v1 on kind cluster "$CLUSTER". Use its kubeconfig:
  export KUBECONFIG=$KUBECONFIG

Grafana (the vidrec dashboards; user admin):
  kubectl -n $MONITORING_NS port-forward svc/kube-prometheus-stack-grafana 3000:80
  open http://localhost:3000 ; the password:
  kubectl -n $MONITORING_NS get secret kube-prometheus-stack-grafana -o jsonpath='{.data.admin-password}' | base64 -d; echo
Prometheus:
  kubectl -n $MONITORING_NS port-forward svc/kube-prometheus-stack-prometheus 9090
The model server:
  kubectl -n $NS port-forward svc/$RELEASE-predictor 8080:80
  curl -s localhost:8080/v1/models/vidrec:predict -d '{"instances": [{"user_id": 1, "k": 10}]}'

Next: make kind-demo (simulated users, a challenger trained in the cluster and released by a
ModelRollout); make kind-down deletes the cluster.
EOF
