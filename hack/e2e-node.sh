#!/usr/bin/env bash
# `make e2e-node`: the operator as its chart deploys it, on the real node (hack/node.sh).
#
#   1. a local cluster with the real node (UCLOUD_REAL_NODE=1), the image from hack/image.sh
#      saved with the engine and imported into the node's containerd (no registry)
#   2. helm install --wait into ucloud-system, which enforces the restricted Pod Security Standard,
#      the pod pinned to the real node: the real kubelet runs it with the chart's securityContext
#      (read-only root filesystem, UID 65532 without a passwd entry made for it) and answers its
#      probes; checked: Ready, on ucloud-real, the root filesystem refuses a write
#   3. pytest tests/e2e, unchanged, against the pod: its /metrics and probes at the pod's IP on the
#      node's bridge, its log from `kubectl logs -f`; the replica pods run on the KWOK nodes
#   4. the operator pod deleted: the Deployment makes a new one, which becomes Ready and takes up
#      a job created while no operator ran
# On failure: the operator log tail, the events, and a dump in $UCLOUD_ARTIFACTS/e2e-node.
#
# Environment: E2E_CLUSTER=e2e-node, IMAGE=ucloud-operator:e2e-node, E2E_IMAGE_BUILD=1 (0: use IMAGE
# as the engine has it), E2E_KEEP_CLUSTER=1 (keep the cluster), UCLOUD_ARTIFACTS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

export UCLOUD_CLUSTER="${E2E_CLUSTER:-e2e-node}" UCLOUD_REAL_NODE=1
release=ucloud-operator
system_ns=ucloud-system
image="${IMAGE:-ucloud-operator:e2e-node}"
python="$root/.venv/bin/python"
artifacts="${UCLOUD_ARTIFACTS:-$root/artifacts}/e2e-node"
rm -rf "$artifacts" && mkdir -p "$artifacts"
work="$(mktemp -d "${TMPDIR:-/tmp}/ucloud-e2e-node.XXXXXX")"
operator_log="$artifacts/operator.log"
logs_pid=""
start=$SECONDS

log() { printf '\e[1me2e-node [%4ss]:\e[0m %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
[[ -x "$python" ]] || die "no $python: run \`make venv\`"
bin="$(hack/build-control-plane.sh | tail -n1)"
export PATH="$bin:$PATH"

wait_until() {  # WHAT SECONDS COMMAND...
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.5
  done
}

finish() {
  local rc=$?
  if [[ -n "$logs_pid" ]]; then kill "$logs_pid" 2>/dev/null || true; fi
  if ((rc != 0)); then
    {
      echo "=== pods"; kubectl get pods -A -o wide
      echo "=== describe operator"; kubectl describe pods -n "$system_ns"
      echo "=== ucloudjobs"; kubectl get ucloudjobs -A -o yaml
      echo "=== events"; kubectl get events -A --sort-by=.lastTimestamp
    } >"$artifacts/dump.txt" 2>&1 || true
    log "operator log tail:"; tail -n 60 "$operator_log" >&2 2>/dev/null || true
    log "last events:"; kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 25 >&2 || true
    cp -r "$HOME/.cache/ucloud-operator/node/$UCLOUD_CLUSTER/logs" "$artifacts/node-logs" 2>/dev/null || true
  fi
  if [[ "${E2E_KEEP_CLUSTER:-0}" == 1 ]]; then
    log "keeping cluster $UCLOUD_CLUSTER: export KUBECONFIG=${KUBECONFIG:-}"
  else
    hack/cluster.sh down >/dev/null 2>&1 || log "could not delete cluster $UCLOUD_CLUSTER"
  fi
  rm -rf "$work"
  if ((rc == 0)); then log "PASSED in $((SECONDS - start))s"; else log "FAILED (exit $rc) after $((SECONDS - start))s"; fi
}
trap finish EXIT

# ------------------------------------------------------------------------------ 1. cluster, image
log "cluster $UCLOUD_CLUSTER with the real node (hack/cluster.sh up)"
KUBECONFIG="$(hack/cluster.sh up | tail -n1)"
export KUBECONFIG
if [[ "${E2E_IMAGE_BUILD:-1}" == 1 ]]; then
  log "building $image (hack/image.sh)"
  IMAGE="$image" hack/image.sh >"$artifacts/image-build.log" 2>&1 || die "image build: $(tail -n 30 "$artifacts/image-build.log")"
fi
engine=podman
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then engine=docker; fi
"$engine" save -o "$work/operator.tar" "$image" >/dev/null || die "$engine save $image"
hack/node.sh import "$work/operator.tar"
# podman names a local image localhost/NAME:TAG; docker keeps NAME:TAG.
ref="$image"; [[ "$engine" == podman && "$ref" != */* ]] && ref="localhost/$ref"
log "image $ref imported into the node's containerd"

# ------------------------------------------------------------------------------ 2. helm install
kubectl delete namespace "$system_ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl create namespace "$system_ns" >/dev/null
kubectl label namespace "$system_ns" >/dev/null \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
values=(
  --set "image.repository=${ref%:*}" --set "image.tag=${ref##*:}" --set image.pullPolicy=Never
  --set-string 'nodeSelector.ucloud\.dk/node=real'
  --set 'tolerations[0].key=ucloud.dk/real-node' --set 'tolerations[0].operator=Exists'
  --set 'tolerations[0].effect=NoSchedule'
)
log "helm install $release ${values[*]}"
t0=$SECONDS
helm install "$release" helm/ucloud-operator -n "$system_ns" "${values[@]}" --wait --timeout 4m \
  >"$artifacts/helm-install.txt" 2>&1 || die "helm install: $(tail -n 20 "$artifacts/helm-install.txt")"
log "installed and Ready in $((SECONDS - t0))s"

operator_pod() {
  # Running and not being deleted; the names, space-separated.
  kubectl get pods -n "$system_ns" -l app.kubernetes.io/instance="$release" \
    --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null |
    awk 'NF == 1 { printf "%s%s", sep, $1; sep = " " }' 
}
follow_logs() {
  if [[ -n "$logs_pid" ]]; then kill "$logs_pid" 2>/dev/null || true; fi
  kubectl logs -f -n "$system_ns" "$1" >>"$operator_log" 2>&1 &
  logs_pid=$!
}
check_pod() {  # the pod the real kubelet runs: where, ready, read-only, as whom
  local pod="$1" node ready
  node="$(kubectl get pod "$pod" -n "$system_ns" -o jsonpath='{.spec.nodeName}')"
  [[ "$node" == ucloud-real ]] || die "operator pod $pod is on $node, not the real node"
  ready="$(kubectl get pod "$pod" -n "$system_ns" -o jsonpath='{.status.containerStatuses[0].ready}')"
  [[ "$ready" == true ]] || die "operator pod $pod is not ready"
  if kubectl exec -n "$system_ns" "$pod" -- python -c 'open("/probe", "w")' 2>"$work/write.err"; then
    die "the operator's root filesystem took a write"
  fi
  grep -q "Read-only file system" "$work/write.err" || die "write refused for another reason: $(cat "$work/write.err")"
  [[ "$(kubectl exec -n "$system_ns" "$pod" -- id -u)" == 65532 ]] || die "the operator does not run as 65532"
  pod_ip="$(kubectl get pod "$pod" -n "$system_ns" -o jsonpath='{.status.podIP}')"
  log "operator pod $pod: Ready on ucloud-real at $pod_ip, probes answered to the kubelet, root filesystem read-only, UID 65532"
}

pod="$(operator_pod)"
[[ -n "$pod" && "$pod" != *" "* ]] || die "expected one running operator pod, found '$pod'"
follow_logs "$pod"
check_pod "$pod"
restarts="$(kubectl get pod "$pod" -n "$system_ns" -o jsonpath='{.status.containerStatuses[0].restartCount}')"
[[ "$restarts" == 0 ]] || die "the operator container restarted $restarts times"

# ------------------------------------------------------------------------------ 3. tests/e2e
log "pytest tests/e2e against the pod"
env UCLOUD_E2E=1 KUBECONFIG="$KUBECONFIG" UCLOUD_E2E_METRICS_URL="http://$pod_ip:8080/metrics" \
  UCLOUD_E2E_HEALTH_URL="http://$pod_ip:8081" UCLOUD_E2E_OPERATOR_LOG="$operator_log" \
  "$python" -m pytest tests/e2e -q -p no:cacheprovider --junitxml="$artifacts/junit.xml" ||
  die "tests/e2e failed"

# ------------------------------------------------------------------------------ 4. pod deleted
kubectl create namespace e2e-node-restart >/dev/null 2>&1 || true
wait_until "ServiceAccount default in e2e-node-restart" 60 kubectl get serviceaccount default -n e2e-node-restart
log "deleting operator pod $pod"
kubectl delete pod "$pod" -n "$system_ns" --wait=true --timeout=60s >/dev/null
# A job made while no operator runs: the next one must take it up.
kubectl apply -n e2e-node-restart -f manifests/examples/one-replica.yaml >/dev/null
new_pod_ready() { local p; p="$(operator_pod)"; [[ -n "$p" && "$p" != "$pod" && "$p" != *" "* ]] &&
  kubectl wait --for=condition=Ready "pod/$p" -n "$system_ns" --timeout=2s; }
wait_until "a new operator pod, Ready" 120 new_pod_ready
pod="$(operator_pod)"
follow_logs "$pod"
check_pod "$pod"
job="$(kubectl get ucloudjobs -n e2e-node-restart -o jsonpath='{.items[0].metadata.name}')"
has_state() { [[ -n "$(kubectl get ucloudjob "$job" -n e2e-node-restart -o jsonpath='{.status.state}')" ]]; }
wait_until "job $job to get a state from the new operator" 60 has_state
log "the Deployment brought the operator back as $pod; job $job: $(kubectl get ucloudjob "$job" -n e2e-node-restart -o jsonpath='{.status.state} {.status.reason}')"
kubectl delete namespace e2e-node-restart --wait=false >/dev/null
