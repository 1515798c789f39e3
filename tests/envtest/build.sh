#!/usr/bin/env bash
# Builds the local control plane and the real VictoriaMetrics operator world used by the
# integration tests, once, into a cache outside the checkout:
#   kube-apiserver, kube-controller-manager,
#   kube-scheduler                            (k8s.io/kubernetes, version from go.mod here)
#   etcd                                      (go.etcd.io/etcd/server/v3, pinned to the etcd client
#                                              version Kubernetes itself requires: no dependency skew)
#   helm                                      (helm.sh/helm/v3, `go install` at HELM_VERSION)
#   kwok                                      (sigs.k8s.io/kwok, `go install` at KWOK_VERSION): fake
#                                              nodes whose pods get loopback IPs
#   kwok-stages.yaml                          (kwok's own node/pod/volume Stages, from its module zip
#                                              checked against KWOK_SUM)
#   vm-operator                               (github.com/VictoriaMetrics/operator at VM_OPERATOR_VERSION,
#                                              its module zip checked against VM_OPERATOR_SUM)
#   vm-operator-crd.yaml                      (the operator's full CRD set, from the same module zip)
# into ${VMD_CACHE_DIR:-$HOME/.cache/vmdistributed}/envtest/<key>/bin, where <key> names every
# version. Nothing is rebuilt when the binaries are already there. Prints the bin directory on
# stdout; progress goes to stderr.
#
# A cold build (empty Go caches) takes several minutes on 2 cores and needs about 3.5 GB of Go build
# and module cache; see BENCHMARKS.md "Control plane".
set -euo pipefail

HELM_VERSION=v3.22.0
KWOK_VERSION=v0.8.0
KWOK_SUM=h1:OTIOTwgROqPMovcTwxICx2eYQ4AwLpSx5EpjbDKF4SQ=
# The VictoriaMetrics operator the tests run against, and the go.sum hashes of its two modules
# (the module proxy serves exact versions; these pin the bytes).
VM_OPERATOR_VERSION=v0.74.1
VM_OPERATOR_SUM=h1:NyGPEt1HlrwpF9zSqdcrrBaxI2uUfndNppOCmlDrZhc=
VM_OPERATOR_API_SUM=h1:ZFcfz5OhdA0TWfaUrKvhfw6nXBs6M96nh4pPRacq6oA=
# helm v3.22.0's go.mod says `go 1.26.0`; the Kubernetes module itself needs 1.24.
GO_MIN=1.26

here=$(cd "$(dirname "$0")" && pwd)
GO=${GO:-go}
say() { echo "envtest: $*" >&2; }

if ! command -v "$GO" >/dev/null 2>&1; then
  say "Go is required to build kube-apiserver, etcd and helm for the integration tests."
  say "Install Go $GO_MIN or newer (https://go.dev/dl/) and put it on PATH, or set GO=/path/to/go."
  exit 1
fi
go_version=$("$GO" env GOVERSION 2>/dev/null || true)
go_version=${go_version#go}
version_ge() { # version_ge A B: A >= B, comparing numeric dot-separated parts
  local IFS=.; local -a a=($1) b=($2); local i
  for i in 0 1 2; do
    local x=${a[i]:-0} y=${b[i]:-0}; x=${x%%[!0-9]*}; y=${y%%[!0-9]*}
    (( ${x:-0} > ${y:-0} )) && return 0; (( ${x:-0} < ${y:-0} )) && return 1
  done
  return 0
}
if [ -z "$go_version" ] || ! version_ge "$go_version" "$GO_MIN"; then
  say "Go $GO_MIN or newer is required (found: ${go_version:-unknown} at $(command -v "$GO"))."
  say "Install a newer Go from https://go.dev/dl/."
  exit 1
fi

modver() { awk -v m="$1" '$1==m {print $2; exit}' "$here/go.mod"; }
K8S_VERSION=$(modver k8s.io/kubernetes)
ETCD_VERSION=$(modver go.etcd.io/etcd/server/v3)
[ -n "$K8S_VERSION" ] && [ -n "$ETCD_VERSION" ] || { say "cannot read versions from $here/go.mod"; exit 1; }

goos=$("$GO" env GOOS); goarch=$("$GO" env GOARCH)
key="k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-kwok-$KWOK_VERSION-vmop-$VM_OPERATOR_VERSION-$goos-$goarch"
root=${VMD_CACHE_DIR:-$HOME/.cache/vmdistributed}/envtest
bin=$root/$key/bin
tools=(kube-apiserver etcd kube-controller-manager kube-scheduler helm kwok vm-operator)

complete() {
  local t; for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done
  [ -s "$bin/vm-operator-crd.yaml" ] && [ -s "$bin/kwok-stages.yaml" ]
}
if complete; then echo "$bin"; exit 0; fi

# Several test binaries (or a developer and a test run) may ask at once: one builds, the rest wait.
mkdir -p "$root/$key"
exec 9>"$root/$key/.lock"
if ! flock -n 9; then
  say "another build of $key is running; waiting for it"
  flock 9
fi
if complete; then echo "$bin"; exit 0; fi

# Build into a scratch dir next to the cache and move the results in only when each one succeeded,
# so an interrupted build never leaves a half-written binary that looks cached.
stage=$(mktemp -d "$root/$key/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$bin"
export CGO_ENABLED=0
start_all=$SECONDS

need() { local t; for t in "$@"; do [ -x "$bin/$t" ] || return 0; done; return 1; }

if need kube-apiserver etcd kube-controller-manager kube-scheduler; then
  say "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION and etcd $ETCD_VERSION (cold: ~6 min on 2 cores)"
  t=$SECONDS
  mm=${K8S_VERSION#v}; mm=${mm%.*}
  X=k8s.io/component-base/version
  (cd "$here" && GOFLAGS="-mod=readonly -buildvcs=false" "$GO" build -trimpath \
    -ldflags="-s -w -X $X.gitVersion=$K8S_VERSION -X $X.gitMajor=${mm%%.*} -X $X.gitMinor=${mm#*.} -X $X.gitTreeState=clean" \
    -o "$stage/" ./kube-apiserver ./etcd ./kube-controller-manager ./kube-scheduler)
  for t2 in kube-apiserver etcd kube-controller-manager kube-scheduler; do mv -f "$stage/$t2" "$bin/$t2"; done
  say "built Kubernetes binaries in $((SECONDS - t)) s"
fi

if need helm; then
  say "building helm $HELM_VERSION (cold: ~2 min on 2 cores)"
  t=$SECONDS
  # `go install pkg@version` ignores any enclosing module and verifies helm's go.sum through the
  # checksum database, so the version above pins the build.
  GOBIN=$stage GOFLAGS=-trimpath "$GO" install \
    -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv -f "$stage/helm" "$bin/helm"
  say "built helm in $((SECONDS - t)) s"
fi

if need kwok; then
  say "building kwok $KWOK_VERSION (cold: ~2.5 min on 2 cores)"
  t=$SECONDS
  GOBIN=$stage GOFLAGS=-trimpath "$GO" install -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv -f "$stage/kwok" "$bin/kwok"
  say "built kwok in $((SECONDS - t)) s"
fi

# The operator's go.mod replaces its api module with ./api, a nested module its zip leaves out,
# so `go install` refuses it: build from a writable copy of the module with the api module put
# back at ./api. Both zips are checked against the pinned hashes first.
module_dir() { # module_dir PATH VERSION SUM: download, verify the go.sum hash, print the directory
  local json sum dir
  json=$(cd "$stage" && "$GO" mod download -json "$1@$2") || return 1
  sum=$(printf '%s\n' "$json" | sed -n 's/.*"Sum": "\(.*\)".*/\1/p')
  dir=$(printf '%s\n' "$json" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  if [ "$sum" != "$3" ]; then say "$1@$2: module hash $sum, expected $3"; return 1; fi
  printf '%s\n' "$dir"
}
if need vm-operator || [ ! -s "$bin/vm-operator-crd.yaml" ]; then
  say "building the VictoriaMetrics operator $VM_OPERATOR_VERSION (cold: ~4 min on 2 cores)"
  t=$SECONDS
  op=$(module_dir github.com/VictoriaMetrics/operator "$VM_OPERATOR_VERSION" "$VM_OPERATOR_SUM")
  api=$(module_dir github.com/VictoriaMetrics/operator/api "$VM_OPERATOR_VERSION" "$VM_OPERATOR_API_SUM")
  cp -r "$op" "$stage/operator" && cp -r "$api" "$stage/operator/api" && chmod -R u+w "$stage/operator"
  (cd "$stage/operator" && GOFLAGS="-mod=readonly -buildvcs=false" "$GO" build -trimpath \
    -ldflags="-s -w" -o "$stage/vm-operator" ./cmd)
  cp "$stage/operator/config/crd/overlay/crd.yaml" "$stage/vm-operator-crd.yaml"
  mv -f "$stage/vm-operator" "$bin/vm-operator"
  mv -f "$stage/vm-operator-crd.yaml" "$bin/vm-operator-crd.yaml"
  say "built the VictoriaMetrics operator in $((SECONDS - t)) s"
fi

# kwok only acts through Stages given in its config: use the ones its release ships (node init,
# pod ready/complete/delete, PVC provisioning for StorageClass kwok-volume), unchanged.
if [ ! -s "$bin/kwok-stages.yaml" ]; then
  kwok_mod=$(module_dir sigs.k8s.io/kwok "$KWOK_VERSION" "$KWOK_SUM")
  for f in node/fast/node-initialize.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml \
    pod/fast/pod-delete.yaml volume/fast/pv-bind.yaml volume/fast/pv-delete.yaml \
    volume/fast/pvc-provision.yaml volume/fast/pvc-delete.yaml; do
    echo "---"; cat "$kwok_mod/kustomize/stage/$f"
  done > "$stage/kwok-stages.yaml"
  mv -f "$stage/kwok-stages.yaml" "$bin/kwok-stages.yaml"
  say "copied kwok $KWOK_VERSION stages"
fi

complete || { say "build finished but binaries are missing in $bin"; exit 1; }
say "control plane binaries ready in $bin ($((SECONDS - start_all)) s)"
echo "$bin"
