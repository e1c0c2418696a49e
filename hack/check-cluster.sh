#!/usr/bin/env bash
# Smoke test of the local test cluster: brings it up (hack/cluster.sh up), checks the server
# version, then drives one pod per KWOK stage behaviour (hack/kwok-stages.yaml), a batch/v1 Job
# and an unschedulable pod in a scratch namespace. Prints PASS/FAIL per case; exit 1 on any FAIL.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"

KUBECONFIG="$("$here/cluster.sh" up | tail -n1)"
export KUBECONFIG
eval "$("$here/cluster.sh" env)"

echo "== kubectl version"
kubectl version
server="$(kubectl get --raw /version | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])')"
failures=0
if [[ "$server" == "v$KUBE_VERSION" ]]; then
  echo "PASS server-version ($server)"
else
  echo "FAIL server-version: got $server, want v$KUBE_VERSION"
  failures=$((failures + 1))
fi

ns="ucloud-check-$(date +%s)-$RANDOM"
kubectl create namespace "$ns" >/dev/null
trap 'kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true' EXIT
# Pods are refused until the namespace's default ServiceAccount exists.
deadline=$((SECONDS + 30))
until kubectl get serviceaccount default -n "$ns" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "FAIL no default ServiceAccount in $ns"; exit 1; }
  sleep 0.1
done

# pod NAME [ANNOTATION=VALUE ...]: a single-container pod; the scheduler picks the fake node.
pod() {
  local name="$1" kv
  shift
  printf -- '---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n' "$name"
  if (($#)); then
    echo "  annotations:"
    for kv in "$@"; do echo "    ${kv%%=*}: \"${kv#*=}\""; done
  fi
  cat <<YAML
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: ucloud-test:1
    resources: {requests: {cpu: 100m, memory: 64Mi}}
YAML
}

{
  pod default
  pod stay-pending ucloud.dk/test-stay-pending=true
  pod image-pull-fail ucloud.dk/test-image-pull-fail=true
  pod exit-0 ucloud.dk/test-exit-code=0 ucloud.dk/test-exit-after=100ms
  pod exit-3 ucloud.dk/test-exit-code=3 ucloud.dk/test-exit-after=100ms
  pod exit-137-oom ucloud.dk/test-exit-code=137 ucloud.dk/test-exit-reason=OOMKilled \
    ucloud.dk/test-exit-signal=9 ucloud.dk/test-exit-after=2s
  pod evict ucloud.dk/test-evict=true ucloud.dk/test-exit-after=100ms
  pod kubelet-reject ucloud.dk/test-kubelet-reject=OutOfcpu
  pod node-lost ucloud.dk/test-node-lost=true ucloud.dk/test-exit-after=100ms
  pod deadline-exceeded ucloud.dk/test-deadline-exceeded=true ucloud.dk/test-exit-after=100ms
  pod delete-me
  cat <<YAML
---
apiVersion: v1
kind: Pod
metadata:
  name: unschedulable
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: ucloud-test:1
    resources: {requests: {cpu: "64"}}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: job-ok
spec:
  parallelism: 2
  completions: 2
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: ucloud-test:1
---
apiVersion: batch/v1
kind: Job
metadata:
  name: job-exit-1
spec:
  parallelism: 2
  completions: 2
  backoffLimit: 0
  template:
    metadata:
      annotations:
        ucloud.dk/test-exit-code: "1"
        ucloud.dk/test-exit-after: 100ms
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: ucloud-test:1
YAML
} | kubectl apply -n "$ns" -f - >/dev/null
start=$SECONDS

# expect CASE RESOURCE JSONPATH WANT [TIMEOUT_S]: poll until the rendered JSONPATH matches the glob WANT.
expect() {
  local case="$1" res="$2" path="$3" want="$4" timeout="${5:-20}" got=""
  local deadline=$((SECONDS + timeout)) t0=${EPOCHREALTIME/./}
  while :; do
    got="$(kubectl get -n "$ns" "$res" -o "jsonpath=$path" 2>&1)" || true
    # shellcheck disable=SC2053 # WANT is a glob on purpose
    [[ "$got" == $want ]] && break
    if ((SECONDS >= deadline)); then
      echo "FAIL $case: got '$got', want '$want' (after ${timeout}s)"
      failures=$((failures + 1))
      return 0
    fi
    sleep 0.1
  done
  local ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
  echo "PASS $case (${ms}ms)"
}

cs='{.status.containerStatuses[0].state'
term="$cs.terminated.exitCode}/$cs.terminated.reason}"
expect default pod/default "{.status.phase}/{.status.conditions[?(@.type=='Ready')].status}/{.spec.nodeName}/$cs.running.startedAt}" \
  "Running/True/ucloud-node-?/20*"
expect image-pull-fail pod/image-pull-fail "{.status.phase}/$cs.waiting.reason}" "Pending/ErrImagePull"
expect image-pull-back-off pod/image-pull-fail "{.status.phase}/$cs.waiting.reason}" "Pending/ImagePullBackOff"
expect exit-0 pod/exit-0 "{.status.phase}/$term" "Succeeded/0/Completed"
expect exit-3 pod/exit-3 "{.status.phase}/$term" "Failed/3/Error"
expect exit-137-oom pod/exit-137-oom "{.status.phase}/$term/$cs.terminated.signal}" "Failed/137/OOMKilled/9"
expect evict pod/evict "{.status.phase}/{.status.reason}/{.status.containerStatuses[0].lastState.terminated.exitCode}/{.status.conditions[?(@.type=='DisruptionTarget')].status}" \
  "Failed/Evicted/137/"
expect kubelet-reject pod/kubelet-reject "{.status.phase}/{.status.reason}/{.status.containerStatuses}" "Failed/OutOfcpu/"
expect node-lost pod/node-lost "{.status.phase}/{.status.reason}" "Unknown/NodeLost"
expect deadline-exceeded pod/deadline-exceeded "{.status.phase}/{.status.reason}" "Failed/DeadlineExceeded"
expect unschedulable pod/unschedulable "{.status.phase}/{.status.conditions[?(@.type=='PodScheduled')].status}/{.status.conditions[?(@.type=='PodScheduled')].reason}" \
  "Pending/False/Unschedulable"
expect job-ok job/job-ok "{.status.succeeded}/{.status.conditions[?(@.type=='Complete')].status}" "2/True"
expect job-exit-1 job/job-exit-1 "{.status.conditions[?(@.type=='Failed')].status}" "True"

# The exit delay is honoured: ucloud.dk/test-exit-after=2s between start and finish.
started="$(kubectl get -n "$ns" pod/exit-137-oom -o "jsonpath={.status.startTime}")"
finished="$(kubectl get -n "$ns" pod/exit-137-oom -o "jsonpath=$cs.terminated.finishedAt}")"
delay="$(python3 -c 'import sys; from datetime import datetime as d; f=lambda s: d.fromisoformat(s.replace("Z","+00:00")); print(f"{(f(sys.argv[2])-f(sys.argv[1])).total_seconds():.2f}")' "$started" "$finished")"
if python3 -c 'import sys; sys.exit(not 1.5 <= float(sys.argv[1]) <= 5)' "$delay"; then
  echo "PASS exit-after-delay (${delay}s)"
else
  echo "FAIL exit-after-delay: ${delay}s between startTime and finishedAt, want about 2s"
  failures=$((failures + 1))
fi

# Deletion: a Running pod holding a finalizer is removed promptly (kwok clears the finalizers).
expect delete-running pod/delete-me "{.status.phase}" "Running"
kubectl patch -n "$ns" pod/delete-me --type=merge -p '{"metadata":{"finalizers":["ucloud.dk/test-hold"]}}' >/dev/null
kubectl delete -n "$ns" pod/delete-me --wait=false >/dev/null
expect pod-delete pod/delete-me "{.metadata.name}" 'Error from server (NotFound): pods "delete-me" not found'

# Checked last, after everything else has had time to act on it: still untouched.
expect stay-pending pod/stay-pending "{.status.phase}/{.status.conditions[?(@.type=='PodScheduled')].status}/{.status.containerStatuses}" \
  "Pending/True/" 5

echo "== $((SECONDS - start))s, $failures failure(s)"
((failures == 0))
