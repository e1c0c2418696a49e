# shellcheck shell=bash
# hack/lib/e2e.sh: what the end-to-end scripts on the local control plane share (hack/e2e-local.sh,
# hack/e2e-upgrade.sh). Sourced, not run, from the repository root, with `name` set (log lines,
# artifacts), and `watched` (the namespaces the operator watches; `unwatched`, one it must leave
# alone, is optional). Then:
#   use_cluster NAME   the cluster the script owns (never make test's, the demo's, CI's, a bench's)
#   e2e_begin          the venv checked, the control plane's binaries on PATH, the artifacts and
#                      work folders, the EXIT trap (stop the operator, dump on failure, delete the
#                      cluster unless E2E_KEEP_CLUSTER=1)
#   cluster_up         start (or reuse) the cluster; KUBECONFIG exported
# and the steps: reset_cluster, create_namespaces, service_account_kubeconfig, start_operator
# (args and env from the Deployment in $work/manifest.yaml), stop_operator, wait_until, dump.
release=ucloud-operator
system_ns=ucloud-system
sa_user="system:serviceaccount:$system_ns:$release"
root="$PWD"
chart="$root/helm/ucloud-operator"
python="$root/.venv/bin/python"
start=$SECONDS
operator_pid=""
operator_log=""
operator_kind=process  # or container: hack/e2e-local.sh with E2E_OPERATOR=container (run_container)
container=""  # container mode: the running operator container's name
mode=""
failures=0
summary=""  # what passed, for the last line (e2e-local: its modes)

use_cluster() {
  case "$1" in
    ucloud | ci | itest | bench*)
      echo "$name: refusing cluster '$1': it belongs to make test/demo/CI/bench" >&2
      exit 2 ;;
  esac
  export UCLOUD_CLUSTER="$1"
}

log() { printf '\e[1m%s [%4ss]%s:\e[0m %s\n' "$name" "$((SECONDS - start))" "${mode:+ $mode}" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

e2e_begin() {
  artifacts="${UCLOUD_ARTIFACTS:-$root/artifacts}/$name"
  rm -rf "$artifacts" && mkdir -p "$artifacts"
  work="$(mktemp -d "${TMPDIR:-/tmp}/ucloud-$name.XXXXXX")"
  [[ -x "$python" ]] || die "no $python: run \`make venv\`"
  bin="$(hack/build-control-plane.sh | tail -n1)"
  export PATH="$bin:$PATH"
  trap finish EXIT
}

cluster_up() {
  log "cluster $UCLOUD_CLUSTER (hack/cluster.sh up)"
  KUBECONFIG="$(hack/cluster.sh up | tail -n1)"
  export KUBECONFIG
  kubectl version -o json >"$artifacts/version.json"
}

stop_operator() {
  [[ -n "$operator_pid" ]] || return 0
  if kill -0 "$operator_pid" 2>/dev/null; then
    kill -TERM "$operator_pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$operator_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$operator_pid" 2>/dev/null; then
      log "operator $operator_pid ignored SIGTERM for 15s; killing it"
      kill -KILL "$operator_pid" 2>/dev/null || true
    fi
  fi
  local rc=0
  wait "$operator_pid" 2>/dev/null || rc=$?
  operator_pid=""
  if [[ -n "$container" ]]; then
    log "container $container exited with $rc"
    "${engine_cmd[@]}" inspect "$container" >"$artifacts/container-$mode.json" 2>&1 || true
    "${engine_cmd[@]}" rm --force "$container" >/dev/null 2>&1 || true
    container=""
  fi
}

# The operator (the local process, or the `podman run` client attached to the container, which
# forwards SIGTERM to it and exits with its exit code) is still running.
operator_alive() { [[ -n "$operator_pid" ]] && kill -0 "$operator_pid" 2>/dev/null; }

dump() {
  log "dumping state to $artifacts"
  {
    echo "=== helm list -A"; helm list -A || true
    echo "=== helm status"; helm status "$release" -n "$system_ns" || true
    echo "=== $system_ns"; kubectl get all,serviceaccounts,roles,rolebindings -n "$system_ns" -o wide || true
    echo "=== describe deployment"; kubectl describe deployment -n "$system_ns" || true
    echo "=== cluster roles"; kubectl get clusterroles,clusterrolebindings -l app.kubernetes.io/name=ucloud-operator || true
    echo "=== ucloudjobs"; kubectl get ucloudjobs -A -o yaml || true
    echo "=== pods"; kubectl get pods -A -o wide || true
    echo "=== events"; kubectl get events -A --sort-by=.lastTimestamp || true
  } >"$artifacts/dump.txt" 2>&1
  if [[ -n "$operator_log" && -f "$operator_log" ]]; then
    log "operator log tail ($operator_log):"
    tail -n 60 "$operator_log" >&2 || true
  fi
  log "jobs (state, history):"
  kubectl get ucloudjobs -A -o wide >&2 2>/dev/null || true
  kubectl get ucloudjobs -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}: {.status.updates[*].state}{"\n"}{end}' >&2 2>/dev/null || true
  log "last events:"
  kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 25 >&2 || true
}

finish() {
  local rc=$?
  stop_operator
  if ((rc != 0)); then
    dump
  fi
  if [[ "${E2E_KEEP_CLUSTER:-0}" == 1 ]]; then
    log "keeping cluster $UCLOUD_CLUSTER: export KUBECONFIG=$KUBECONFIG"
  else
    hack/cluster.sh down >/dev/null 2>&1 || log "could not delete cluster $UCLOUD_CLUSTER"
  fi
  rm -rf "$work"
  if ((rc == 0)); then
    log "PASSED${summary:+ ($summary)} in $((SECONDS - start))s; artifacts in $artifacts"
  else
    log "FAILED (exit $rc) after $((SECONDS - start))s; artifacts in $artifacts"
  fi
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Poll a command until it succeeds or the deadline passes.
wait_until() {
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

reset_cluster() {
  log "removing what a previous run left"
  helm uninstall "$release" -n "$system_ns" --wait >/dev/null 2>&1 || true
  kubectl delete ucloudjobs --all -A --wait=false >/dev/null 2>&1 || true
  kubectl delete crd ucloudjobs.ucloud.dk --ignore-not-found --wait=true >/dev/null
  kubectl delete namespace "$system_ns" "${watched[@]}" ${unwatched:+"$unwatched"} --ignore-not-found \
    --wait=true --timeout=120s >/dev/null
}

create_namespaces() {
  local ns
  # The operator's namespace enforces the restricted Pod Security Standard: the chart's pod must
  # pass it, or its ReplicaSet cannot create it and `helm install --wait` times out.
  kubectl create namespace "$system_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace "$system_ns" --overwrite >/dev/null \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
  for ns in "${watched[@]}" ${unwatched:+"$unwatched"}; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    wait_until "ServiceAccount default in $ns" 60 kubectl get serviceaccount default -n "$ns"
  done
}

# A kubeconfig with the cluster's server and CA and a token of the chart's ServiceAccount.
service_account_kubeconfig() {
  local out="$work/operator-kubeconfig" server ca ca_data token
  server="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
  if [[ -z "$ca" ]]; then
    ca_data="$(kubectl config view --raw --minify \
      -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
    ca="$work/ca.crt"
    base64 -d <<<"$ca_data" >"$ca"
  fi
  token="$(kubectl create token "$release" -n "$system_ns" --duration=2h)"
  kubectl config --kubeconfig="$out" set-cluster e2e --server="$server" \
    --certificate-authority="$ca" --embed-certs=true >/dev/null
  kubectl config --kubeconfig="$out" set-credentials "$release" --token="$token" >/dev/null
  kubectl config --kubeconfig="$out" set-context e2e --cluster=e2e --user="$release" \
    --namespace="$system_ns" >/dev/null
  kubectl config --kubeconfig="$out" use-context e2e >/dev/null
  chmod 600 "$out"
  local who
  who="$(kubectl --kubeconfig="$out" auth whoami -o jsonpath='{.status.userInfo.username}')"
  [[ "$who" == "$sa_user" ]] || die "the operator kubeconfig authenticates as '$who', not $sa_user"
  echo "$out"
}

# start_operator KUBECONFIG [PYTHONPATH]: the operator with the args and env of the Deployment in
# $work/manifest.yaml, as the ServiceAccount of KUBECONFIG; its package from PYTHONPATH when given
# (another commit's operator/), else the venv's (this tree's); waits for /readyz.
start_operator() {
  local kubeconfig_sa="$1" metrics_port health_port
  local -a package=()
  [[ -z "${2:-}" ]] || package=(PYTHONPATH="$2")
  metrics_port="$(free_port)"
  health_port="$(free_port)"
  metrics_url="http://127.0.0.1:$metrics_port/metrics"
  health_url="http://127.0.0.1:$health_port"
  # The Deployment's args and env, with the listen addresses moved to local ports.
  local -a args env_vars
  mapfile -t args < <("$python" - "$work/manifest.yaml" args <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
(deployment,) = [d for d in docs if d["kind"] == "Deployment"]
(container,) = deployment["spec"]["template"]["spec"]["containers"]
for arg in container.get("args", []):
    if arg.split("=")[0] not in ("--metrics-address", "--health-address"):
        print(arg)
PY
  )
  mapfile -t env_vars < <("$python" - "$work/manifest.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
(deployment,) = [d for d in docs if d["kind"] == "Deployment"]
(container,) = deployment["spec"]["template"]["spec"]["containers"]
for env in container.get("env", []):
    if "value" in env:
        print(f"{env['name']}={env['value']}")
PY
  )
  args+=("--metrics-address=127.0.0.1:$metrics_port" "--health-address=127.0.0.1:$health_port")
  env_vars+=("POD_NAME=$name-$mode" "POD_NAMESPACE=$system_ns")
  operator_log="$artifacts/operator-$mode.log"
  log "operator env: ${env_vars[*]}"
  local t0=$EPOCHREALTIME
  if [[ "$operator_kind" == container ]]; then
    run_container "${args[@]}"
  else
    log "operator: python -m ucloud_operator ${args[*]}"
    # Only the ServiceAccount's kubeconfig: none of the caller's credentials or UCLOUD_* settings.
    env -i PATH="$PATH" HOME="$HOME" PYTHONUNBUFFERED=1 KUBECONFIG="$kubeconfig_sa" \
      "${package[@]}" "${env_vars[@]}" "$python" -m ucloud_operator "${args[@]}" >"$operator_log" 2>&1 &
    operator_pid=$!
  fi
  local deadline=$((SECONDS + 60))
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "$health_url/readyz")" == 200 ]]; do
    operator_alive || die "the operator exited: $(tail -n 30 "$operator_log")"
    ((SECONDS < deadline)) || die "/readyz not 200 within 60s"
    sleep 0.05
  done
  local ready_ms=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
  if [[ "$operator_kind" == container ]]; then
    log "container $container: podman run -> /readyz 200 in ${ready_ms} ms (metrics $metrics_url)"
    echo "$mode start_to_ready_ms=$ready_ms" >>"$artifacts/timings.txt"
  else
    log "operator pid $operator_pid ready in ${ready_ms} ms (metrics $metrics_url)"
  fi
  if [[ "$mode" == leader ]]; then
    wait_until "the operator to hold Lease $system_ns/$release" 60 lease_held_by "$name-$mode"
    log "the operator holds Lease $system_ns/$release"
  fi
}

lease_held_by() {
  local holder
  holder="$(kubectl get lease "$release" -n "$system_ns" -o jsonpath='{.spec.holderIdentity}')"
  [[ "$holder" == "$1"* ]]
}
