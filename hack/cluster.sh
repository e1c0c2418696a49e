#!/usr/bin/env bash
# Local test cluster for ucloud-operator: a kwokctl "binary runtime" cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok-controller as plain processes) plus three fake
# KWOK nodes. Nothing is downloaded: every binary comes from hack/build-control-plane.sh.
#
#   hack/cluster.sh up          create (or reuse) the cluster; last stdout line = kubeconfig path
#   hack/cluster.sh down        delete the cluster
#   hack/cluster.sh kubeconfig  print the kubeconfig path (fails if the cluster is not up)
#   hack/cluster.sh env         print `export` lines: eval "$(hack/cluster.sh env)"
#
# Environment:
#   UCLOUD_CLUSTER=ucloud       cluster name (several clusters can coexist)
#   KUBE_VERSION=1.37.2         another Kubernetes than hack/versions.env's default (1.36.x, 1.37.x);
#                               its binaries are built into their own cache folder
#   UCLOUD_WORKLOAD_API=0       leave the Workload API off (by default on: the feature gates and the
#                               scheduling.k8s.io version that serve Workload/PodGroup and turn on gang
#                               scheduling, per Kubernetes minor; see workload_api_flags)
#   UCLOUD_EXTRA_FEATURE_GATES=WorkloadWithJob=true
#                               more feature gates, comma-separated, appended to those above (kwokctl
#                               gives them to kube-apiserver, kube-controller-manager, kube-scheduler);
#                               bench/ uses it for the Job controller's own Workload integration
#   UCLOUD_AUDIT_LOG=path       turn on the API server audit log (policy: hack/audit-policy.yaml)
#   UCLOUD_NO_QPS_LIMITS=1      kwokctl --disable-qps-limits (no APF/inflight limits, high client QPS)
#   UCLOUD_KWOKCTL_ARGS="..."   extra `kwokctl create cluster` flags, word-split
#   UCLOUD_REAL_NODE=1          add a real node (kubelet, containerd, kube-proxy, CoreDNS: hack/node.sh)
#                               beside the KWOK nodes; needs root. The control plane then advertises
#                               the API server on the node's bridge address, reaches the kubelet for
#                               logs and exec, and judges nodes by upstream's heartbeat times (node
#                               lost after 40 s instead of kwokctl's 3m20s).
#   UCLOUD_CACHE                cache root (default ~/.cache/ucloud-operator), shared with the build
#
# `up` is idempotent: a healthy cluster created with the same settings is reused in about a second;
# a stopped or broken one, or one created with different settings, is deleted and recreated.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"  # KUBE_VERSION: the default, or the environment's
cache_root="${UCLOUD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ucloud-operator}"
cluster="${UCLOUD_CLUSTER:-ucloud}"
# Keep kwokctl's state away from ~/.kwok (and from any ~/.kwok/kwok.yaml it would load by default).
export KWOK_WORKDIR="$cache_root/kwok"
cluster_dir="$KWOK_WORKDIR/clusters/$cluster"
kubeconfig="$cache_root/kubeconfig-$cluster"
stages="$here/kwok-stages.yaml"
real_node_config="$here/kwokctl-real-node.yaml"
audit_policy="$here/audit-policy.yaml"
nodes=(ucloud-node-0 ucloud-node-1 ucloud-node-2)

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# Binaries: built once into the cache; prepended to PATH so kwokctl and we use the same kubectl.
bin_dir() {
  local out
  out="$("$here/build-control-plane.sh")" || die "hack/build-control-plane.sh failed"
  bin="$(tail -n1 <<<"$out")"
  [[ -x "$bin/kwokctl" ]] || die "no kwokctl in $bin"
  export PATH="$bin:$PATH"
}

kc() { kubectl --kubeconfig "$kubeconfig" "$@"; }

# The Workload API (scheduling.k8s.io Workload and PodGroup, the pods' spec.schedulingGroup) and
# gang scheduling need a feature gate on kube-apiserver, kube-scheduler and kube-controller-manager
# (storage, admission and RBAC; the GangScheduling plugin; the podgroup-protection controller) and
# an API version the apiserver serves only when asked. The gates and the version differ by minor:
# 1.36: GenericWorkload and GangScheduling (alpha), scheduling.k8s.io/v1alpha2;
# 1.37: GenericWorkload (beta; GangScheduling is gone, so naming it is an error), scheduling.k8s.io/v1beta1
# (v1alpha2 is gone). No API version is served by both.
workload_api_flags() {
  local gates="" runtime_config=""
  if [[ "${UCLOUD_WORKLOAD_API:-1}" != 0 ]]; then
    case "$KUBE_VERSION" in
      1.36.*) gates=GenericWorkload=true,GangScheduling=true runtime_config=scheduling.k8s.io/v1alpha2=true ;;
      1.37.*) gates=GenericWorkload=true runtime_config=scheduling.k8s.io/v1beta1=true ;;
      *) die "no Workload API settings for Kubernetes $KUBE_VERSION (UCLOUD_WORKLOAD_API=0 runs without)" ;;
    esac
  fi
  if [[ -n "${UCLOUD_EXTRA_FEATURE_GATES:-}" ]]; then
    gates="${gates:+$gates,}$UCLOUD_EXTRA_FEATURE_GATES"
  fi
  # kwokctl gives --kube-feature-gates to all three components and --kube-runtime-config to the
  # apiserver (no --extra-args, so none of their ordering trouble). Empty values are stated too, so
  # a stray KWOK_KUBE_FEATURE_GATES or KWOK_KUBE_RUNTIME_CONFIG cannot turn anything on.
  args+=(--kube-feature-gates "$gates" --kube-runtime-config "$runtime_config")
}

kwokctl_args() {
  args=(
    --runtime binary
    # Local paths only: any non-URL source is symlinked into the cluster dir, nothing is fetched.
    --kube-apiserver-binary "$bin/kube-apiserver"
    --kube-controller-manager-binary "$bin/kube-controller-manager"
    --kube-scheduler-binary "$bin/kube-scheduler"
    --kwok-controller-binary "$bin/kwok"
    --etcd-binary "$bin/etcd"
    # Secure defaults, stated so a stray KWOK_* variable cannot turn them off.
    --secure-port=true --kube-authorization=true --kube-admission=true
    # Do not merge a context into ~/.kube/config; we hand out our own kubeconfig path.
    --kubeconfig ""
    # A healthy start takes seconds; fail in about 2 minutes rather than kwokctl's default 4+.
    --wait 60s --timeout 60s
  )
  workload_api_flags
  configs=(--config "$stages")
  local extra=()  # COMPONENT=FLAG=VALUE, for kwokctl's --extra-args
  if [[ -n "${UCLOUD_AUDIT_LOG:-}" ]]; then
    local audit_log
    audit_log="$(realpath -m "$UCLOUD_AUDIT_LOG")"
    mkdir -p "$(dirname "$audit_log")"
    # kwokctl always logs to <cluster>/logs/audit.log; the later flag wins in kube-apiserver.
    args+=(--kube-audit-policy "$audit_policy")
    extra+=("kube-apiserver=audit-log-path=$audit_log")
  fi
  if [[ "${UCLOUD_REAL_NODE:-0}" == 1 ]]; then
    extra+=(
      # kwok-controller starts with --manage-all-nodes=true and would fake the real node's pods;
      # the last flag wins, so it keeps to the annotated fake nodes.
      "kwok-controller=manage-all-nodes=false"
      "kwok-controller=manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake"
      # The `kubernetes` Service points at an address the pods reach (hack/node.sh's bridge).
      "kube-apiserver=advertise-address=10.244.0.1"
      "kube-apiserver=kubelet-client-certificate=$cluster_dir/pki/admin.crt"
      "kube-apiserver=kubelet-client-key=$cluster_dir/pki/admin.key"
      "kube-apiserver=kubelet-preferred-address-types=InternalIP"
    )
    args+=(--heartbeat-factor 1)
    configs+=(--config "$real_node_config")
  fi
  # kwokctl 0.8.0 panics (index out of range) unless the k-th distinct component of the
  # --extra-args list first appears at position k: one flag of each component first.
  local item seen=" " first=() rest=()
  for item in "${extra[@]}"; do
    if [[ "$seen" == *" ${item%%=*} "* ]]; then rest+=("$item"); else first+=("$item"); seen+="${item%%=*} "; fi
  done
  for item in "${first[@]}" "${rest[@]}"; do args+=(--extra-args "$item"); done
  if [[ "${UCLOUD_NO_QPS_LIMITS:-0}" == 1 ]]; then
    args+=(--disable-qps-limits)
  fi
  if [[ -n "${UCLOUD_KWOKCTL_ARGS:-}" ]]; then
    local extra
    read -r -a extra <<<"$UCLOUD_KWOKCTL_ARGS"
    args+=("${extra[@]}")
  fi
}

# A cluster is reused only if it was made from the same flags, stages and audit policy.
fingerprint() {
  {
    printf '%s\n' "${args[@]}"
    cat "$stages"
    [[ "${UCLOUD_REAL_NODE:-0}" != 1 ]] || cat "$real_node_config"
    [[ -z "${UCLOUD_AUDIT_LOG:-}" ]] || cat "$audit_policy"
  } | sha256sum | cut -d' ' -f1
}

processes_alive() {
  local pidfile pid n=0
  for pidfile in "$cluster_dir"/pids/*.pid; do
    [[ -f "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    # Alive, not a zombie waiting to be reaped, and still our binary (pids get reused).
    [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == [^Z]* ]] || return 1
    grep -qF "$cluster_dir/" "/proc/$pid/cmdline" 2>/dev/null || return 1
    n=$((n + 1))
  done
  # etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok-controller
  ((n >= 5))
}

healthy() {
  [[ -f "$cluster_dir/kwok.yaml" && -f "$cluster_dir/ucloud.fingerprint" ]] || return 1
  [[ "$(<"$cluster_dir/ucloud.fingerprint")" == "$(fingerprint)" ]] || { log "settings changed"; return 1; }
  processes_alive || { log "some component is not running"; return 1; }
  [[ "$(kc --request-timeout=5s get --raw=/readyz 2>/dev/null)" == ok ]] || { log "kube-apiserver not ready"; return 1; }
}

node_manifests() {
  local n
  for n in "${nodes[@]}"; do
    cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec: {}
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
YAML
  done
}

ensure_nodes() {
  # Node status is kept on create, and kwok's node-initialize keeps allocatable/capacity.
  node_manifests | kc apply -f - >&2
  kc wait --for=condition=Ready --timeout=60s "${nodes[@]/#/node/}" >&2
}

nodes_ready() {
  local n want="" got
  for n in "${nodes[@]}"; do want+="$n=True "; done
  got="$(kc --request-timeout=5s get node "${nodes[@]}" -o \
    'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}' 2>/dev/null)" || return 1
  [[ "$got" == "$want" ]]
}

wait_default_sa() {
  # Pods are refused until kube-controller-manager has made the namespace's default ServiceAccount.
  local deadline=$((SECONDS + 60))
  until kc get serviceaccount default -n default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "no default ServiceAccount after 60s"
    sleep 0.2
  done
}

delete_cluster() {
  # kwokctl refuses an empty --kubeconfig here; point it at the cluster's own file (deleted anyway)
  # so ~/.kube/config is left alone.
  kwokctl --name "$cluster" delete cluster --kubeconfig "$cluster_dir/kubeconfig.yaml" >&2
}

lock() {
  mkdir -p "$cache_root"
  # Serialise concurrent `up`/`down` calls (e.g. parallel test workers) per cluster name.
  exec 9>"$cache_root/cluster-$cluster.lock"
  flock -w 600 9 || die "another hack/cluster.sh holds $cache_root/cluster-$cluster.lock"
}

create() {
  local attempt
  log "creating cluster $cluster (KWOK_WORKDIR=$KWOK_WORKDIR)"
  log "kwokctl --name $cluster ${configs[*]} create cluster ${args[*]@Q}"
  # A symlink: always kwokctl's current file, and dangling (visible) once the cluster is gone.
  ln -sfn "$cluster_dir/kubeconfig.yaml" "$kubeconfig"
  # kwokctl picks "unused" ports by probing, so two clusters created at once can pick the same
  # ones: creation is serialised across all cluster names, and retried once on a port clash.
  exec 8>"$cache_root/kwokctl-create.lock"
  flock -w 600 8 || die "another hack/cluster.sh holds $cache_root/kwokctl-create.lock"
  for attempt in 1 2; do
    # 8>&- 9>&-: the components kwokctl leaves running must not inherit (and hold) our locks.
    # kwokctl exits 0 even when --wait runs out, so check the API server ourselves.
    if kwokctl --name "$cluster" "${configs[@]}" create cluster "${args[@]}" >&2 8>&- 9>&- &&
      [[ "$(kc --request-timeout=5s get --raw=/readyz 2>/dev/null)" == ok ]]; then
      exec 8>&-
      fingerprint >"$cluster_dir/ucloud.fingerprint"
      return 0
    fi
    log "cluster $cluster did not come up; logs kept in $cache_root/failed-$cluster-logs; last lines:"
    tail -n 5 "$cluster_dir"/logs/*.log >&2 2>/dev/null || true
    rm -rf "$cache_root/failed-$cluster-logs"
    cp -r "$cluster_dir/logs" "$cache_root/failed-$cluster-logs" 2>/dev/null || true
    delete_cluster 2>/dev/null || rm -rf "$cluster_dir"
    if ((attempt == 1)) && grep -qs "address already in use" "$cache_root/failed-$cluster-logs"/*.log; then
      log "port clash, retrying"
      continue
    fi
    break
  done
  rm -f "$kubeconfig"
  die "could not create cluster $cluster"
}

up() {
  bin_dir
  kwokctl_args
  lock
  if [[ -d "$cluster_dir" ]]; then
    if healthy; then
      log "cluster $cluster is up"
      ln -sfn "$cluster_dir/kubeconfig.yaml" "$kubeconfig"
      # Fast path: nothing to do if the nodes are there and Ready (e.g. not deleted by a test).
      if nodes_ready && { [[ "${UCLOUD_REAL_NODE:-0}" != 1 ]] || UCLOUD_CLUSTER="$cluster" "$here/node.sh" up; }; then
        echo "$kubeconfig"
        return
      fi
    else
      log "recreating cluster $cluster"
      delete_cluster || rm -rf "$cluster_dir"
      create
    fi
  else
    create
  fi
  ensure_nodes
  wait_default_sa
  if [[ "${UCLOUD_REAL_NODE:-0}" == 1 ]]; then
    UCLOUD_CLUSTER="$cluster" "$here/node.sh" up
  fi
  echo "$kubeconfig"
}

down() {
  bin_dir
  lock
  if [[ -d "$cache_root/node/$cluster" ]]; then
    UCLOUD_CLUSTER="$cluster" "$here/node.sh" down
  fi
  if [[ -d "$cluster_dir" ]]; then
    log "deleting cluster $cluster"
    delete_cluster
  else
    log "no cluster $cluster"
  fi
  rm -f "$kubeconfig"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  kubeconfig)
    [[ -e "$kubeconfig" ]] || die "cluster $cluster is not up (run: hack/cluster.sh up)"
    echo "$kubeconfig"
    ;;
  env)
    bin_dir
    echo "export UCLOUD_CLUSTER=$(printf %q "$cluster")"
    echo "export KUBE_VERSION=$(printf %q "$KUBE_VERSION")"
    echo "export KWOK_WORKDIR=$(printf %q "$KWOK_WORKDIR")"
    echo "export KUBECONFIG=$(printf %q "$kubeconfig")"
    echo "export PATH=$(printf %q "$bin"):\"\$PATH\""
    ;;
  *)
    echo "usage: $0 up|down|kubeconfig|env" >&2
    exit 2
    ;;
esac
