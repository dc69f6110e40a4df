#!/usr/bin/env bash
# The test control plane, built from the Go module proxy (no Docker, no release downloads
# here): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from
# k8s.io/kubernetes (go.mod points its staging `replace` lines at the published k8s.io/*
# versions), plus helm and kwok (fake nodes) by `go install`. Idempotent: the binaries are
# cached under ~/.cache/vidrec/k8s-<version>-<hash of go.sum and this script>/bin, and that
# directory is printed last.
set -euo pipefail
HELM=helm.sh/helm/v4/cmd/helm@v4.3.1
KWOK=sigs.k8s.io/kwok/cmd/kwok@v0.8.0
here=$(cd "$(dirname "$0")" && pwd)
version=$(grep -oE 'k8s\.io/kubernetes v[0-9.]+' "$here/go.mod" | head -1 | cut -d' ' -f2)
key=$(cat "$here/go.sum" "$0" | sha256sum | cut -c1-12)
out="${VIDREC_CACHE:-$HOME/.cache/vidrec}/k8s-$version-$key/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm kwok kwok-stage)
if (cd "$out" 2>/dev/null && ls "${tools[@]}" >/dev/null 2>&1); then
  echo "$out"
  exit 0
fi
echo "building ${tools[*]} ($version; about 15 min on 2 cores, once)" >&2
tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
cd "$here"
minor=$(echo "$version" | cut -d. -f2)
# a real version string: helm checks a chart's kubeVersion against it
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
export GOFLAGS=-mod=readonly
go build -trimpath -ldflags "$ldflags" -o "$tmp/" k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
# outside this module: `go install pkg@version` resolves the tool's own go.mod
for tool in "$HELM" "$KWOK"; do
  (cd "$tmp" && GOFLAGS= GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "$tool")
done
# kwok's own stages (what a fake node and its pods go through), used as `--config DIR`
src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@${KWOK##*@}/kustomize/stage"
cp -r "$src" "$tmp/kwok-stage" && chmod -R u+w "$tmp/kwok-stage"
rm -rf "$out" && mv "$tmp" "$out"
echo "$out"
