#!/usr/bin/env bash
# The test control plane: kube-apiserver and etcd built from the Go module proxy (no Docker,
# no release downloads here). go.mod pins k8s.io/kubernetes and points its staging `replace`
# lines at the published k8s.io/* versions. Idempotent: the binaries are cached under
# ~/.cache/vidrec/k8s-<version>-<go.sum hash>/bin, and that directory is printed last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(grep -oE 'k8s\.io/kubernetes v[0-9.]+' "$here/go.mod" | head -1 | cut -d' ' -f2)
key=$(sha256sum "$here/go.sum" | cut -c1-12)
out="${VIDREC_CACHE:-$HOME/.cache/vidrec}/k8s-$version-$key/bin"
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi
echo "building kube-apiserver and etcd $version (about 15 min on 2 cores, once)" >&2
tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
cd "$here"
GOFLAGS=-mod=readonly go build -trimpath -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
GOFLAGS=-mod=readonly go build -trimpath -o "$tmp/etcd" go.etcd.io/etcd/server/v3
rm -rf "$out" && mv "$tmp" "$out"
echo "$out"
