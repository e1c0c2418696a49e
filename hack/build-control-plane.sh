#!/usr/bin/env bash
# Builds the local control plane from Go modules into a cache outside the repo and prints the
# folder that holds the binaries. Idempotent: a binary already in the cache is not rebuilt.
# The versions come from hack/versions.env; KUBE_VERSION in the environment picks another
# Kubernetes (e.g. KUBE_VERSION=1.37.2, with its etcd), built into a folder of its own beside the
# default's: the folder's name carries every version.
#
# A user who already has the binaries sets UCLOUD_ASSETS to their folder (as envtest's
# KUBEBUILDER_ASSETS); binaries found on PATH are linked in as well, so nothing is built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"
[[ "$KUBE_VERSION" =~ ^1\.[0-9]+\.[0-9]+$ ]] || { echo "build-control-plane: KUBE_VERSION=$KUBE_VERSION is not 1.N.P" >&2; exit 1; }

# kubelet and kube-proxy are the real node's (hack/node.sh); they come from the same module.
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok kwokctl helm)
stamp="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
cache_root="${UCLOUD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ucloud-operator}"
bin="$cache_root/$stamp/bin"
mkdir -p "$bin"

log() { echo "build-control-plane: $*" >&2; }

# The version a binary must report to be taken instead of built.
want_version() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kwok | kwokctl) echo "$KWOK_VERSION" ;;
    helm) echo "v$HELM_VERSION" ;;
    *) echo "v$KUBE_VERSION" ;;
  esac
}
reports_version() {  # binary, version: does `binary --version` (or `version`) mention it?
  local out  # captured first: grep -q closing the pipe early would fail the pipeline
  out="$("$1" --version 2>/dev/null || "$1" version --client 2>/dev/null || true)"
  grep -qF -- "$2" <<<"$out"
}

# Take what the user already has, when it is the pinned version: UCLOUD_ASSETS first, then PATH.
for name in "${binaries[@]}"; do
  [[ -x "$bin/$name" ]] && continue
  for found in "${UCLOUD_ASSETS:+$UCLOUD_ASSETS/$name}" "$(PATH="${PATH//$bin/}" command -v "$name" 2>/dev/null || true)"; do
    if [[ -n "$found" && -x "$found" ]] && reports_version "$found" "$(want_version "$name")"; then
      ln -sf "$found" "$bin/$name"
      break
    fi
  done
done

missing() { for name in "$@"; do [[ -x "$bin/$name" ]] || return 0; done; return 1; }

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
work="$cache_root/$stamp/src"

if missing kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; then
  log "building Kubernetes v$KUBE_VERSION (cold: ~15-25 min on 2 cores)"
  mod="$work/kubernetes"
  mkdir -p "$mod"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init local/k8sbins >/dev/null 2>&1
    # k8s.io/kubernetes maps its staging modules to ./staging; point each at its published v0.Y.Z.
    gomod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' |
      while read -r m; do go mod edit -replace="$m=$m@v0.${KUBE_VERSION#1.}"; done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
    go mod edit -require="k8s.io/kubernetes@v$KUBE_VERSION"
    # tidy resolves the rest without moving the pinned require (a bare `go get` would take the newest).
    go mod tidy >/dev/null
    grep -q "k8s.io/kubernetes v$KUBE_VERSION" go.mod || { log "go.mod drifted from v$KUBE_VERSION"; exit 1; }
    minor="${KUBE_VERSION#1.}"; minor="${minor%%.*}"
    date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    ldflags="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
      ldflags+=" -X $p.gitCommit=0000000000000000000000000000000000000000"
    done
    go build -p 2 -trimpath -pgo=off -ldflags "$ldflags" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  )
fi

if missing etcd; then
  log "building etcd v$ETCD_VERSION"
  mod="$work/etcd"
  mkdir -p "$mod"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init local/etcdbin >/dev/null 2>&1
    cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null
    go mod tidy >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
  )
fi

if missing kwok kwokctl; then
  log "building kwok v$KWOK_VERSION"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@v$KWOK_VERSION"
fi

if missing helm; then
  log "building helm v$HELM_VERSION"
  GOBIN="$bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
fi

echo "$bin"
