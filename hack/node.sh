#!/usr/bin/env bash
# A real node beside the KWOK nodes of a local cluster: kubelet and kube-proxy (built with the
# control plane), containerd and runc, the CNI bridge, CoreDNS for the cluster domain.
#
#   hack/node.sh up      start the node for $UCLOUD_CLUSTER (its control plane must be up, made by
#                        hack/cluster.sh with UCLOUD_REAL_NODE=1); waits until it is Ready
#   hack/node.sh down    stop what `up` started (by the PIDs it recorded), unmount, remove its state
#   hack/node.sh import IMAGE.tar   import a docker archive into the node's containerd
#   hack/node.sh kubelet-stop|kubelet-start   stop or start the kubelet alone (tests of a lost node)
#
# Needs root (it runs containers) and one machine per node: kube-proxy's iptables chains and the
# bridge are the machine's. Traffic stays on this machine: pods sit on the bridge $bridge with
# $pod_cidr, have no default route (only the Service range through the host) and no masquerade,
# and CoreDNS answers the cluster domain only (no upstream). The node is named $node_name, carries
# the taint ucloud.dk/real-node=true:NoSchedule (so only pods that tolerate it run real
# containers) and the label ucloud.dk/node=real, and registers as system:node:$node_name with a
# client certificate signed by the cluster's CA.
#
# Environment: UCLOUD_CLUSTER (default ucloud), UCLOUD_CACHE.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"
cache_root="${UCLOUD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ucloud-operator}"
cluster="${UCLOUD_CLUSTER:-ucloud}"
cluster_dir="$cache_root/kwok/clusters/$cluster"
kubeconfig="$cache_root/kubeconfig-$cluster"
state="$cache_root/node/$cluster"
run_dir="/run/ucloud-node"
socket="$run_dir/containerd.sock"
node_name=ucloud-real
bridge=ucloud0
host_ip=10.244.0.1
pod_cidr=10.244.0.0/24
service_cidr=10.0.0.0/24   # kube-apiserver's default range (kwokctl sets none)
kubelet_port=10250

log() { echo "node.sh: $*" >&2; }
die() { log "$*"; exit 1; }
kc() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

binaries() {
  bin="$("$here/build-control-plane.sh" | tail -n1)"
  node_out="$("$here/build-node.sh" | tail -n1)"
  [[ -x "$bin/kubelet" && -x "$bin/kube-proxy" ]] || die "no kubelet or kube-proxy in $bin"
  export PATH="$node_out/bin:$PATH"
}

# ------------------------------------------------------------------------------ identities
certificate() {  # NAME CN O: a client certificate signed by the cluster's CA, in $state/pki
  local name="$1" cn="$2" org="$3" pki="$state/pki"
  [[ -f "$pki/$name.crt" ]] && return 0
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" \
    -subj "/O=$org/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$cluster_dir/pki/ca.crt" -CAkey "$cluster_dir/pki/ca.key" \
    -CAcreateserial -out "$pki/$name.crt" -days 30 \
    -extfile <(printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') 2>/dev/null
}

identity_kubeconfig() {  # NAME: a kubeconfig for $state/pki/NAME.{crt,key}
  local name="$1" server
  server="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  cat >"$state/$name.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority: "$cluster_dir/pki/ca.crt"}
users:
- name: $name
  user: {client-certificate: "$state/pki/$name.crt", client-key: "$state/pki/$name.key"}
contexts:
- name: local
  context: {cluster: local, user: $name}
current-context: local
YAML
}

identities() {
  mkdir -p "$state/pki"
  certificate kubelet "system:node:$node_name" system:nodes
  certificate kube-proxy system:kube-proxy system:node-proxier
  certificate coredns system:ucloud-coredns system:ucloud-coredns
  for name in kubelet kube-proxy coredns; do identity_kubeconfig "$name"; done
  # CoreDNS reads Services, EndpointSlices and Namespaces (as the kube-dns ClusterRole of kubeadm).
  kc apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:ucloud-coredns"}
rules:
- apiGroups: [""]
  resources: [services, namespaces, endpoints, pods]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:ucloud-coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:ucloud-coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:ucloud-coredns"}
YAML
}

# ------------------------------------------------------------------------------ processes
start() {  # NAME COMMAND...: run in the background, log to $state/logs/NAME.log, record the PID
  local name="$1"
  shift
  mkdir -p "$state/logs" "$state/pids"
  # 7>&- 8>&- 9>&-: a daemon must not inherit (and hold) this script's or hack/cluster.sh's locks.
  "$@" </dev/null >>"$state/logs/$name.log" 2>&1 7>&- 8>&- 9>&- &
  echo $! >"$state/pids/$name.pid"
}

alive() { [[ -f "$state/pids/$1.pid" ]] && kill -0 "$(<"$state/pids/$1.pid")" 2>/dev/null; }

wait_for() {  # SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 20 "$state"/logs/*.log >&2 2>/dev/null; die "$what: not after $1 s"; }
    sleep 0.5
  done
}

stop_pid() {  # NAME: SIGTERM, then SIGKILL after 10 s
  local pidfile="$state/pids/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(<"$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# ------------------------------------------------------------------------------ network
network() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$host_ip/24" dev "$bridge"
  ip link set "$bridge" up
  mkdir -p "$state/cni/net.d" "$state/cni/ipam"
  # No default route and no masquerade: a pod reaches its bridge, the host's bridge address (API
  # server, CoreDNS, kubelet) and the Service range through the host, nothing else.
  cat >"$state/cni/net.d/10-ucloud.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "ucloud",
  "plugins": [
    {
      "type": "bridge", "bridge": "$bridge", "isGateway": true, "isDefaultGateway": false,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$state/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$host_ip"}]],
        "routes": [{"dst": "$service_cidr", "gw": "$host_ip"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": false}
  ]
}
JSON
}

# ------------------------------------------------------------------------------ containerd
containerd_up() {
  mkdir -p "$run_dir" "$state/containerd"
  cat >"$state/containerd/config.toml" <<TOML
version = 3
root = "$state/containerd/root"
state = "$run_dir/state"
[grpc]
  address = "$socket"
[ttrpc]
  address = "$run_dir/containerd.sock.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins."io.containerd.cri.v1.runtime"]
  # This machine withholds CAP_SYS_RESOURCE: runc may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  # Other runtimes on the machine (podman) bind-mount /run/netns over itself.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$node_out/cni"]
    conf_dir = "$state/cni/net.d"
TOML
  start containerd containerd --config "$state/containerd/config.toml"
  wait_for 30 "containerd" ctr --address "$socket" version
  import_image "$node_out/images/pause.tar"
  import_image "$node_out/images/busybox.tar"
}

import_image() {  # TAR
  ctr --address "$socket" -n k8s.io images import --no-unpack=false "$1" >/dev/null ||
    die "ctr images import $1 failed"
}

# ------------------------------------------------------------------------------ CoreDNS
coredns_up() {
  mkdir -p "$state/coredns"
  cat >"$state/coredns/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $host_ip
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $state/coredns.kubeconfig local
        pods insecure
        ttl 5
    }
    cache 5
}
COREFILE
  start coredns coredns -conf "$state/coredns/Corefile"
}

# ------------------------------------------------------------------------------ kube-proxy, kubelet
kube_proxy_up() {
  cat >"$state/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
clientConnection: {kubeconfig: "$state/kube-proxy.kubeconfig"}
bindAddress: $host_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$host_ip/32"]
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack sysctls as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "$bin/kube-proxy" --config "$state/kube-proxy.yaml" --v=2
}

kubelet_up() {
  mkdir -p "$state/kubelet" "$state/pod-logs"
  : >"$state/resolv.conf"  # pods get CoreDNS and the cluster search path, nothing of the host's
  cat >"$state/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$socket
address: $host_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$cluster_dir/pki/ca.crt"}
authorization: {mode: Webhook}
failSwapOn: false
rotateCertificates: false
clusterDNS: [$host_ip]
clusterDomain: cluster.local
resolvConf: "$state/resolv.conf"
podCIDR: $pod_cidr
podLogsDir: "$state/pod-logs"
registerWithTaints:
- {key: ucloud.dk/real-node, value: "true", effect: NoSchedule}
# This machine's disk may be fuller than the defaults allow; the tests evict by sizeLimit.
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
  start kubelet "$bin/kubelet" --config "$state/kubelet.yaml" --kubeconfig "$state/kubelet.kubeconfig" \
    --hostname-override "$node_name" --node-ip "$host_ip" --root-dir "$state/kubelet" \
    --cert-dir "$state/kubelet/pki" --node-labels "ucloud.dk/node=real" --v=2
}

ready() {
  [[ "$(kc get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# ------------------------------------------------------------------------------ up, down
lock() {
  mkdir -p "$cache_root"
  exec 7>"$cache_root/node.lock"
  flock -w 300 7 || die "another hack/node.sh holds $cache_root/node.lock"
}

up() {
  [[ "$(id -u)" == 0 ]] || die "the real node needs root"
  [[ -e "$kubeconfig" ]] || die "cluster $cluster is not up: UCLOUD_REAL_NODE=1 hack/cluster.sh up"
  binaries
  lock
  local other
  other="$(cat "$cache_root/node.owner" 2>/dev/null || true)"
  if [[ -n "$other" && "$other" != "$cluster" ]] && [[ -d "$cache_root/node/$other/pids" ]]; then
    die "the real node of cluster $other runs on this machine (UCLOUD_CLUSTER=$other hack/node.sh down)"
  fi
  if alive containerd && alive kubelet && alive kube-proxy && alive coredns && ready; then
    log "node $node_name is up"
    return 0
  fi
  down_locked
  echo "$cluster" >"$cache_root/node.owner"
  local t0=$SECONDS
  mkdir -p "$state"
  identities
  network
  containerd_up
  coredns_up
  kube_proxy_up
  kubelet_up
  wait_for 90 "node $node_name Ready" ready
  log "node $node_name Ready after $((SECONDS - t0)) s (logs: $state/logs)"
}

down_locked() {
  stop_pid kubelet
  stop_pid kube-proxy
  stop_pid coredns
  if alive containerd; then
    # The pods' containers and sandboxes, then their shims (started by containerd, not its children).
    local id
    for id in $(ctr --address "$socket" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$socket" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_pid containerd
  pkill -9 -f "containerd-shim-runc-v2 .*-address $socket" 2>/dev/null || true
  # Everything the kubelet and containerd mounted below the state folders.
  local mnt
  for mnt in $(awk -v a="$state/" -v b="$run_dir/" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
  if [[ -n "${bin:-}" && -x "$bin/kube-proxy" && -f "$state/kube-proxy.yaml" ]]; then
    "$bin/kube-proxy" --cleanup --config "$state/kube-proxy.yaml" >/dev/null 2>&1 || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  if [[ -e "$kubeconfig" ]]; then kc delete node "$node_name" --ignore-not-found --wait=false >/dev/null 2>&1 || true; fi
  rm -rf "$state" "$run_dir"
  rm -f "$cache_root/node.owner"
}

down() {
  bin="$("$here/build-control-plane.sh" 2>/dev/null | tail -n1)" || bin=""
  node_out="$("$here/build-node.sh" 2>/dev/null | tail -n1)" || node_out=""
  [[ -n "$node_out" ]] && export PATH="$node_out/bin:$PATH"
  lock
  down_locked
  log "node $node_name of cluster $cluster stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  # For tests of a node that stops reporting: the kubelet alone, its containers left running.
  kubelet-stop) stop_pid kubelet ;;
  kubelet-start)
    bin="$("$here/build-control-plane.sh" | tail -n1)"
    alive kubelet || kubelet_up
    wait_for 90 "node $node_name Ready" ready
    ;;
  import)
    [[ -f "${2:-}" ]] || die "usage: $0 import IMAGE.tar"
    node_out="$("$here/build-node.sh" | tail -n1)"
    export PATH="$node_out/bin:$PATH"
    import_image "$2"
    ;;
  *) echo "usage: $0 up|down|import IMAGE.tar|kubelet-stop|kubelet-start" >&2; exit 2 ;;
esac
