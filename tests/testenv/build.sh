#!/usr/bin/env bash
# Build the test-environment binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, jaeger, helm) from their Go modules into a cache outside the repo.
# Idempotent: a binary that already exists in the cache is skipped.
# Usage: bash tests/testenv/build.sh        (prints the bin dir on the last line)
#        bash tests/testenv/build.sh --print-bin-dir   (only prints where binaries go)
#        bash tests/testenv/build.sh --print-node-bin-dir   (where the real node's kubelet and pause go)
#        bash tests/testenv/build.sh --print-services-bin-dir   (where the real node's kube-proxy and CoreDNS go)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1091
source "$here/versions.env"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cache_root="${FLOWPODS_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowpods/testenv}"
key="$(grep -v '^#' "$here/versions.env" | sha256sum | cut -c1-12)"
bin_dir="$cache_root/$key/bin"
src_dir="$cache_root/$key/src"
kube_src_dir="$src_dir/kube"

# The real node's binaries (kubelet, pause) have their own key, so their pins never move the one above.
# shellcheck disable=SC1091
source "$here/versions-node.env"
node_key="$(cat "$here/versions.env" "$here/versions-node.env" "$here/pause/main.go" | grep -v '^#' | sha256sum | cut -c1-12)"
node_bin_dir="$cache_root/node-$node_key/bin"
# The real node's Service plumbing (kube-proxy, CoreDNS): a key of its own as well.
# shellcheck disable=SC1091
source "$here/versions-services.env"
services_key="$(cat "$here/versions.env" "$here/versions-services.env" "$here/coredns/main.go" | grep -v '^#' \
  | sha256sum | cut -c1-12)"
services_bin_dir="$cache_root/services-$services_key/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$bin_dir"
  exit 0
fi
if [[ "${1:-}" == "--print-node-bin-dir" ]]; then
  echo "$node_bin_dir"
  exit 0
fi
if [[ "${1:-}" == "--print-services-bin-dir" ]]; then
  echo "$services_bin_dir"
  exit 0
fi

mkdir -p "$bin_dir" "$src_dir" "$node_bin_dir" "$services_bin_dir"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}"

kube_minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$kube_minor"
helm_ldflags="-s -w -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor \
-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

STAGING="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client \
csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator \
kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils \
pod-security-admission sample-apiserver sample-cli-plugin sample-controller"

total_start=$(date +%s)

fail() {  # binary, log file
  echo "BUILD FAILED: $1 (log: $2); last lines:" >&2
  tail -n 40 "$2" >&2 || true
  exit 1
}

# prepare_module DIR SETUP_FUNC: create a throwaway tools module once.
prepare_module() {
  local dir="$1" setup="$2"
  if [[ -f "$dir/.ready" ]]; then return 0; fi
  local start
  start=$(date +%s)
  rm -rf "$dir"; mkdir -p "$dir"
  echo "preparing tools module $(basename "$dir") (downloads modules) ..."
  (cd "$dir" && "$GO" mod init flowpods-testenv-tools >/dev/null 2>&1 && "$setup") \
    >"$dir/setup.log" 2>&1 || fail "$(basename "$dir") (module setup)" "$dir/setup.log"
  touch "$dir/.ready"
  echo "module  $(basename "$dir") ready in $(( $(date +%s) - start ))s"
}

setup_etcd() {
  "$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
}
setup_kube() {
  local m
  for m in $STAGING; do
    "$GO" mod edit -replace "k8s.io/$m=k8s.io/$m@$KUBE_STAGING_VERSION"
  done
  "$GO" get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$KUBE_VERSION" \
    "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION"
}
setup_jaeger() {
  "$GO" mod edit -replace "github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0"
  "$GO" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
}
setup_helm() {
  "$GO" get -tool "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

setup_kubelet() {
  # the kube module's go.mod (its staging replaces, same dependency versions, so the packages the kubelet
  # shares with the kube-* binaries come from Go's build cache) plus the kubelet as a tool
  cp "$kube_src_dir/go.mod" "$kube_src_dir/go.sum" .
  "$GO" mod edit -module flowpods-testenv-node-tools
  "$GO" get -tool "k8s.io/kubernetes/cmd/kubelet@$KUBELET_VERSION"
}
setup_pause() {
  cp "$here/pause/main.go" .
}
setup_kubeproxy() {
  # like the kubelet: the kube module's dependency versions, so shared packages come from Go's build cache
  cp "$kube_src_dir/go.mod" "$kube_src_dir/go.sum" .
  "$GO" mod edit -module flowpods-testenv-services-tools
  "$GO" get -tool "k8s.io/kubernetes/cmd/kube-proxy@$KUBE_VERSION"
}
setup_coredns() {
  # a main with only the plugins cluster DNS needs (tests/testenv/coredns/main.go), in CoreDNS's module
  cp "$here/coredns/main.go" .
  "$GO" get "github.com/coredns/coredns@$COREDNS_VERSION"
  "$GO" mod tidy
}

# build NAME FAMILY PACKAGE LDFLAGS [OUT_DIR SRC_DIR]
build() {
  local name="$1" family="$2" pkg="$3" ldflags="$4" bin_dir="${5:-$bin_dir}" src_dir="${6:-$src_dir}"
  if [[ -x "$bin_dir/$name" ]]; then
    echo "cached  $name"
    return 0
  fi
  local dir="$src_dir/$family"
  prepare_module "$dir" "setup_$family"
  local start log
  start=$(date +%s)
  log="$dir/build-$name.log"
  echo "building $name ($pkg) ..."
  if ! (cd "$dir" && "$GO" build -p 2 -trimpath -ldflags "$ldflags" -o "$bin_dir/$name.tmp" "$pkg") \
      >"$log" 2>&1; then
    rm -f "$bin_dir/$name.tmp"
    fail "$name" "$log"
  fi
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  echo "built   $name in $(( $(date +%s) - start ))s"
}

build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build kube-scheduler kube k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger "-s -w"
build helm helm helm.sh/helm/v3/cmd/helm "$helm_ldflags"
if [[ "${FLOWPODS_TESTENV_NODE:-real}" != agent ]]; then
  prepare_module "$src_dir/kube" setup_kube
  build kubelet kubelet k8s.io/kubernetes/cmd/kubelet "$kube_ldflags" "$node_bin_dir" "$(dirname "$node_bin_dir")/src"
  build pause pause . "-s -w" "$node_bin_dir" "$(dirname "$node_bin_dir")/src"
  build kube-proxy kubeproxy k8s.io/kubernetes/cmd/kube-proxy "$kube_ldflags" "$services_bin_dir" \
    "$(dirname "$services_bin_dir")/src"
  build coredns coredns . "-s -w" "$services_bin_dir" "$(dirname "$services_bin_dir")/src"
fi

echo "all binaries ready in $(( $(date +%s) - total_start ))s; binaries: $(du -sh "$bin_dir" | cut -f1) in $bin_dir"
echo "$bin_dir"
