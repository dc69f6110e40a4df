#!/usr/bin/env bash
# `make kind-down`: delete the kind cluster of `make kind-up` (its volume, registry and
# Prometheus data go with it). The image stays in the local Docker.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_kind
if cluster_exists; then
	say "deleting kind cluster $CLUSTER"
	kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
else
	echo "no kind cluster $CLUSTER: nothing to delete"
fi
