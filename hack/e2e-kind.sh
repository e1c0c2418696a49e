#!/usr/bin/env bash
# `make e2e-kind`: the real image on a real kubelet. For machines with Docker and kind.
#
#   1. kind create cluster (a throwaway one, deleted at the end)
#   2. docker build the image from ./Dockerfile and `kind load` it (a unique, non-latest tag)
#   3. helm install the chart into ucloud-system, labelled Pod Security "restricted", --wait:
#      the image must start as UID 65532 with a read-only root filesystem and pass /readyz
#   4. pytest tests/e2e through port-forwards to /metrics and /readyz; replica pods run busybox
#   5. the operator pod never restarted; helm uninstall keeps the CRD and the jobs
# On failure: operator logs, describe, events and `kind export logs` in $UCLOUD_ARTIFACTS/e2e-kind.
#
# Environment:
#   KIND_CLUSTER=ucloud-e2e    kind cluster name
#   KIND_NODE_IMAGE            node image (kindest/node:vX.Y.Z); default: kind's own
#   E2E_IMAGE                  image name:tag to build (default ucloud-operator:e2e-<commit>)
#   E2E_SKIP_BUILD=1           use E2E_IMAGE as it is (already built)
#   E2E_KEEP_CLUSTER=1         keep the cluster for inspection
#   E2E_WATCH_NAMESPACES=a,b   install in namespaced mode (the test jobs go to the first one)
#   UCLOUD_ARTIFACTS           where logs go (default ./artifacts)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

cluster="${KIND_CLUSTER:-ucloud-e2e}"
release=ucloud-operator
system_ns=ucloud-system
revision="$(git rev-parse --short HEAD 2>/dev/null || echo dev)"
image="${E2E_IMAGE:-ucloud-operator:e2e-$revision}"
python="$root/.venv/bin/python"
artifacts="${UCLOUD_ARTIFACTS:-$root/artifacts}/e2e-kind"
start=$SECONDS
background=()

log() { printf '\e[1me2e-kind [%4ss]:\e[0m %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in docker kind curl; do
  command -v "$tool" >/dev/null || die "$tool is required (this script is for machines with Docker)"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
[[ -x "$python" ]] || die "no $python: run \`make venv\`"
rm -rf "$artifacts" && mkdir -p "$artifacts"
work="$(mktemp -d "${TMPDIR:-/tmp}/ucloud-e2e-kind.XXXXXX")"
export KUBECONFIG="$work/kubeconfig"
# kubectl and helm: from PATH, else the pinned ones of hack/build-control-plane.sh.
if ! command -v kubectl >/dev/null || ! command -v helm >/dev/null; then
  PATH="$(hack/build-control-plane.sh | tail -n1):$PATH"
  export PATH
fi

repository="${image%:*}"
tag="${image##*:}"
[[ "$repository" != "$image" && "$tag" != latest ]] ||
  die "E2E_IMAGE needs a tag other than latest (else the kubelet pulls): $image"

dump() {
  log "dumping state to $artifacts"
  {
    echo "=== helm status"; helm status "$release" -n "$system_ns" || true
    echo "=== $system_ns"; kubectl get all -n "$system_ns" -o wide || true
    echo "=== describe pods"; kubectl describe pods -n "$system_ns" || true
    echo "=== ucloudjobs"; kubectl get ucloudjobs -A -o yaml || true
    echo "=== pods"; kubectl get pods -A -o wide || true
    echo "=== events"; kubectl get events -A --sort-by=.lastTimestamp || true
  } >"$artifacts/dump.txt" 2>&1
  kubectl logs -n "$system_ns" "deployment/$release" --all-containers --previous \
    >"$artifacts/operator-previous.log" 2>&1 || true
  log "operator log tail:"
  kubectl logs -n "$system_ns" "deployment/$release" --tail=60 >&2 || true
  log "last events:"
  kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 25 >&2 || true
  kind export logs "$artifacts/kind-logs" --name "$cluster" >/dev/null 2>&1 || true
}

finish() {
  local rc=$? pid
  for pid in "${background[@]}"; do kill "$pid" 2>/dev/null || true; done
  if ((rc != 0)); then dump; fi
  if [[ "${E2E_KEEP_CLUSTER:-0}" == 1 ]]; then
    kind get kubeconfig --name "$cluster" >"$artifacts/kubeconfig" 2>/dev/null || true
    log "keeping kind cluster $cluster: export KUBECONFIG=$artifacts/kubeconfig"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  if ((rc == 0)); then
    log "PASSED in $((SECONDS - start))s; artifacts in $artifacts"
  else
    log "FAILED (exit $rc) after $((SECONDS - start))s; artifacts in $artifacts"
  fi
}
trap finish EXIT

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http_200() {
  local url="$1" seconds="$2" deadline=$((SECONDS + $2))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" == 200 ]]; do
    ((SECONDS < deadline)) || die "$url not 200 within ${seconds}s"
    sleep 0.5
  done
}

# ------------------------------------------------------------------------------------ cluster
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "deleting the kind cluster $cluster a previous run left"
  kind delete cluster --name "$cluster" >/dev/null
fi
log "kind create cluster $cluster"
node_image=()
[[ -n "${KIND_NODE_IMAGE:-}" ]] && node_image=(--image "$KIND_NODE_IMAGE")
kind create cluster --name "$cluster" "${node_image[@]}" --kubeconfig "$KUBECONFIG" --wait 3m

# ------------------------------------------------------------------------------------ image
if [[ "${E2E_SKIP_BUILD:-0}" != 1 ]]; then
  log "docker build -t $image"
  version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
  docker build -t "$image" --build-arg VERSION="$version" --build-arg REVISION="$revision" . \
    >"$artifacts/docker-build.log" 2>&1 || die "docker build: $(tail -n 30 "$artifacts/docker-build.log")"
fi
[[ "$(docker image inspect -f '{{.Config.User}}' "$image")" == 65532:65532 ]] ||
  die "the image does not run as 65532:65532"
log "kind load docker-image $image"
kind load docker-image "$image" --name "$cluster"

# ------------------------------------------------------------------------------------ chart
kubectl create namespace "$system_ns"
kubectl label namespace "$system_ns" \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
values=(--set "image.repository=$repository" --set "image.tag=$tag"
        --set image.pullPolicy=IfNotPresent --set operator.logLevel=DEBUG)
job_namespace=()
if [[ -n "${E2E_WATCH_NAMESPACES:-}" ]]; then
  IFS=, read -r -a watch <<<"$E2E_WATCH_NAMESPACES"
  for ns in "${watch[@]}"; do kubectl create namespace "$ns"; done
  values+=(--set "watchNamespaces={$E2E_WATCH_NAMESPACES}")
  job_namespace=(UCLOUD_E2E_NAMESPACE="${watch[0]}")
fi
helm lint --strict helm/ucloud-operator "${values[@]}"
log "helm install $release ${values[*]}"
helm install "$release" helm/ucloud-operator -n "$system_ns" "${values[@]}" --wait --timeout 5m
kubectl rollout status "deployment/$release" -n "$system_ns" --timeout=2m

# ------------------------------------------------------------------------------------ tests
metrics_port="$(free_port)"
health_port="$(free_port)"
kubectl port-forward -n "$system_ns" "deployment/$release" \
  "$metrics_port:8080" "$health_port:8081" >"$artifacts/port-forward.log" 2>&1 &
background+=($!)
kubectl logs -n "$system_ns" "deployment/$release" -f >"$artifacts/operator.log" 2>&1 &
background+=($!)
wait_http_200 "http://127.0.0.1:$health_port/readyz" 60

log "pytest tests/e2e"
env UCLOUD_E2E=1 KUBECONFIG="$KUBECONFIG" UCLOUD_E2E_TIMEOUT=180 \
  UCLOUD_E2E_METRICS_URL="http://127.0.0.1:$metrics_port/metrics" \
  UCLOUD_E2E_HEALTH_URL="http://127.0.0.1:$health_port" \
  UCLOUD_E2E_OPERATOR_LOG="$artifacts/operator.log" "${job_namespace[@]}" \
  "$python" -m pytest tests/e2e -q -p no:cacheprovider --junitxml="$artifacts/junit.xml"

restarts="$(kubectl get pods -n "$system_ns" -l "app.kubernetes.io/instance=$release" \
  -o jsonpath='{.items[*].status.containerStatuses[*].restartCount}')"
[[ "$restarts" == 0 ]] || die "the operator container restarted ($restarts): liveness or a crash"
if grep -niE 'forbidden' "$artifacts/operator.log" >&2; then
  die "the operator was refused an API call (above)"
fi
sa_user="system:serviceaccount:$system_ns:$release"
[[ "$(kubectl auth can-i get secrets -A --as="$sa_user")" == no ]] || die "the operator can read secrets"

# ------------------------------------------------------------------------------------ uninstall
kubectl create namespace e2e-keep
kubectl apply -n e2e-keep -f manifests/examples/one-replica.yaml
log "helm uninstall $release"
helm uninstall "$release" -n "$system_ns" --wait --timeout 2m
kubectl get crd ucloudjobs.ucloud.dk >/dev/null || die "the CRD was deleted by helm uninstall"
kubectl get ucloudjobs -n e2e-keep hello >/dev/null || die "a UCloudJob was deleted by helm uninstall"
log "uninstalled: CRD and UCloudJob kept"
