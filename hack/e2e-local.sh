#!/usr/bin/env bash
# `make e2e-local`: the Helm chart on the local control plane (KWOK nodes), the operator as the
# chart's ServiceAccount, and tests/e2e against it. No Docker needed.
#
# For each mode (namespaced: watchNamespaces=[e2e-a, e2e-b], Roles only; cluster: all
# namespaces, a ClusterRole; leader: cluster plus leaderElection.enabled, a Role for the Lease):
#   1. helm install the chart into ucloud-system (labelled Pod Security "restricted", so the
#      Deployment's pod must pass it), with the CRD, --wait; check the objects it made
#   2. kubectl auth can-i --as=<the chart's ServiceAccount>: everything the operator needs, and
#      nothing more (no secrets, no get, no cluster-wide pods in namespaced mode, ...); and
#      --as=<a user> bound to the built-in edit or view in a watched namespace: UCloudJobs through
#      the chart's aggregated ClusterRoles (edit writes them, view reads them, neither the status)
#   3. run the operator as a LOCAL process (KWOK runs no containers) with the args and env of
#      the chart's Deployment, authenticated with a token of the chart's ServiceAccount, metrics
#      and probes on free 127.0.0.1 ports; wait for /readyz
#   4. pytest tests/e2e (a job IN_QUEUE -> RUNNING -> SUCCESS, cancel, /metrics, /readyz); the
#      operator log must not mention a refused (403) call
#   5. stop the operator, helm uninstall: the CRD and a UCloudJob must remain (keep policy),
#      the rest must be gone
# On failure: the operator log tail, events, and a dump in $UCLOUD_ARTIFACTS/e2e-local.
#
# E2E_OPERATOR=container (`make e2e-image`): step 3 runs the operator from the image instead,
# built first by hack/image.sh (podman here; docker where its engine runs): `podman run
# --network host --read-only --tmpfs /tmp --user 65532:65532 --cap-drop ALL`, the chart's
# resource limits, no kubeconfig: the in-cluster configuration, as a pod gets it:
#   - /var/run/secrets/kubernetes.io/serviceaccount: a token of the chart's ServiceAccount
#     (`kubectl create token`), ca.crt = the cluster's CA from the kubeconfig (kwokctl's CA, which
#     signs the API server's serving certificate; that certificate is valid for 127.0.0.1 and
#     kubernetes.default.svc: checked with curl first), and the namespace
#   - KUBERNETES_SERVICE_HOST=127.0.0.1, KUBERNETES_SERVICE_PORT=443, and kubernetes.default.svc
#     resolving to 127.0.0.1 (--add-host): the client library uses the two variables, kopf's
#     login_with_service_account only the name on port 443, so the cluster's API server is made
#     to listen on 443 (kwokctl --kube-apiserver-port; E2E_APISERVER_PORT)
# That proves the entrypoint, the numeric user, the read-only root filesystem and the in-cluster
# path. The time from `podman run` to /readyz 200 is logged and written to
# $UCLOUD_ARTIFACTS/e2e-image/timings.txt. The container is removed at the end; its output is
# the operator log in the artifacts (tail printed on failure), with its `inspect`.
#
# Environment:
#   E2E_CLUSTER=e2e           the local cluster's name (hack/cluster.sh); this script owns it: it
#                             wipes the CRD and its namespaces first and deletes it at the end.
#                             The names of the other tools' clusters (ucloud, ci, itest) are
#                             refused; UCLOUD_CLUSTER is ignored (the Makefile exports it).
#   E2E_KEEP_CLUSTER=1        keep the cluster (and the last release) for inspection
#   E2E_MODES="namespaced cluster leader"   the modes to run, in order
#   UCLOUD_ARTIFACTS          where logs go (default ./artifacts)
#   E2E_OPERATOR=process      process: a local python process; container: from the image
#   IMAGE=ucloud-operator:e2e the image (container mode)
#   E2E_IMAGE_BUILD=1         container mode: build the image first (0: use IMAGE as it is)
#   ENGINE=docker|podman      container mode: the engine (default as hack/image.sh chooses)
#   E2E_APISERVER_PORT=443    container mode: the API server's port (`random`: kwokctl's choice,
#                             for an operator that does not need kubernetes.default.svc:443)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source hack/lib/e2e.sh

operator_kind="${E2E_OPERATOR:-process}"
case "$operator_kind" in
  process) name=e2e-local; use_cluster "${E2E_CLUSTER:-e2e}" ;;
  container) name=e2e-image; use_cluster "${E2E_CLUSTER:-e2e-img}" ;;
  *) echo "e2e-local: E2E_OPERATOR=$operator_kind: process or container" >&2; exit 2 ;;
esac
read -r -a modes <<<"${E2E_MODES:-namespaced cluster leader}"
summary="${modes[*]}"
watched=(e2e-a e2e-b)
unwatched=e2e-unwatched
image="${IMAGE:-ucloud-operator:e2e}"
api_port_wanted="${E2E_APISERVER_PORT:-443}"
e2e_begin

# ------------------------------------------------------------------------------------ can-i
cani_table="$artifacts/can-i.txt"
# expect yes|no VERB RESOURCE [kubectl auth can-i flags...]: as $as, else the ServiceAccount
as=""
expect() {
  local want="$1" got
  shift
  got="$(kubectl auth can-i "$@" --as="${as:-$sa_user}" 2>/dev/null)" || true
  got="${got%%$'\n'*}"
  printf '%s|%s|%s|%s\n' "$mode" "$want" "${got:-error}" "$*${as:+ --as=$as}" >>"$cani_table"
  if [[ "$got" != "$want" ]]; then
    log "can-i $*: expected $want, got ${got:-error}"
    failures=$((failures + 1))
  fi
}

check_permissions() {
  local ns
  failures=0
  log "kubectl auth can-i --as=$sa_user"
  # What the operator needs, in every namespace it watches.
  local namespaces=("${watched[@]}")
  for ns in "${namespaces[@]}"; do
    expect yes list ucloudjobs.ucloud.dk -n "$ns"
    expect yes watch ucloudjobs.ucloud.dk -n "$ns"
    expect yes patch ucloudjobs.ucloud.dk --subresource=status -n "$ns"
    expect yes update ucloudjobs.ucloud.dk --subresource=finalizers -n "$ns"
    expect yes list pods -n "$ns"
    expect yes watch pods -n "$ns"
    expect yes create pods -n "$ns"
    expect yes delete pods -n "$ns"
    expect yes create services -n "$ns"
    expect yes delete services -n "$ns"
    expect yes create events -n "$ns"
    # Gang admission (operator.gangAdmission, auto here): a PodGroup per job of more than one
    # replica, watched and read, deleted when the job ends.
    expect yes get podgroups.scheduling.k8s.io -n "$ns"
    expect yes list podgroups.scheduling.k8s.io -n "$ns"
    expect yes watch podgroups.scheduling.k8s.io -n "$ns"
    expect yes create podgroups.scheduling.k8s.io -n "$ns"
    expect yes delete podgroups.scheduling.k8s.io -n "$ns"
  done
  # Nothing more: no reads it does not make, no writes to the job's spec, no secrets.
  ns="${watched[0]}"
  expect no get ucloudjobs.ucloud.dk -n "$ns"
  expect no create ucloudjobs.ucloud.dk -n "$ns"
  expect no patch ucloudjobs.ucloud.dk -n "$ns"
  expect no delete ucloudjobs.ucloud.dk -n "$ns"
  expect no update ucloudjobs.ucloud.dk --subresource=status -n "$ns"
  expect no get pods -n "$ns"
  expect no patch pods -n "$ns"
  expect no create pods --subresource=exec -n "$ns"
  expect no get services -n "$ns"
  expect no patch events -n "$ns"
  expect no create events.events.k8s.io -n "$ns"
  # The scheduler writes a PodGroup's status; Workloads the operator does not use at all.
  expect no update podgroups.scheduling.k8s.io --subresource=status -n "$ns"
  expect no patch podgroups.scheduling.k8s.io --subresource=status -n "$ns"
  expect no update podgroups.scheduling.k8s.io -n "$ns"
  expect no patch podgroups.scheduling.k8s.io -n "$ns"
  expect no create workloads.scheduling.k8s.io -n "$ns"
  expect no get workloads.scheduling.k8s.io -n "$ns"
  expect no get secrets -n "$ns"
  expect no list secrets -n "$ns"
  expect no get secrets -n "$system_ns"
  expect no list secrets -A
  expect no get configmaps -n "$ns"
  expect no create serviceaccounts --subresource=token -n "$system_ns"
  expect no create deployments.apps -n "$ns"
  expect no list namespaces
  expect no list customresourcedefinitions.apiextensions.k8s.io
  expect no create kopfpeerings.kopf.dev -n "$ns"
  expect no bind clusterroles.rbac.authorization.k8s.io
  expect no escalate clusterroles.rbac.authorization.k8s.io
  expect no impersonate users
  expect no '*' '*' -A
  expect no get nodes
  expect no patch nodes
  if [[ "$mode" == namespaced ]]; then
    # Only the watched namespaces: nothing cluster-wide, nothing elsewhere.
    expect no list pods -A
    expect no watch pods -A
    expect no list ucloudjobs.ucloud.dk -A
    expect no create pods -n default
    expect no create pods -n "$unwatched"
    expect no create pods -n "$system_ns"
    expect no list ucloudjobs.ucloud.dk -n "$unwatched"
    expect no create events -n "$unwatched"
    expect no create podgroups.scheduling.k8s.io -n "$unwatched"
    expect no list podgroups.scheduling.k8s.io -A
    expect no list nodes
  else
    # The node informer (a replica whose node stops reporting: NodeLost).
    expect yes list nodes
    expect yes watch nodes
    expect yes list pods -A
    expect yes watch pods -A
    expect yes list ucloudjobs.ucloud.dk -A
    expect yes watch ucloudjobs.ucloud.dk -A
    expect yes create pods -n "$unwatched"
    expect yes list podgroups.scheduling.k8s.io -A
    expect yes watch podgroups.scheduling.k8s.io -A
  fi
  if [[ "$mode" == leader ]]; then
    # The one Lease, in the release namespace; nothing else in coordination.k8s.io.
    expect yes create leases.coordination.k8s.io -n "$system_ns"
    expect yes get "leases.coordination.k8s.io/$release" -n "$system_ns"
    expect yes update "leases.coordination.k8s.io/$release" -n "$system_ns"
    expect no get leases.coordination.k8s.io/kube-scheduler -n kube-system
    expect no get leases.coordination.k8s.io/other -n "$system_ns"
    expect no update leases.coordination.k8s.io/other -n "$system_ns"
    expect no delete "leases.coordination.k8s.io/$release" -n "$system_ns"
    expect no list leases.coordination.k8s.io -n "$system_ns"
    expect no create leases.coordination.k8s.io -n "${watched[0]}"
  else
    expect no create leases.coordination.k8s.io -n "$system_ns"
    expect no get "leases.coordination.k8s.io/$release" -n "$system_ns"
  fi
  kubectl auth can-i --list --as="$sa_user" -n "${watched[0]}" >"$artifacts/can-i-list-$mode.txt" 2>&1 || true
  ((failures == 0)) || die "$failures permission check(s) failed (see $cani_table)"
  log "permissions as expected ($(grep -c "^$mode|" "$cani_table") checks)"
}

# Users' access to UCloudJobs through the built-in roles (rbac.aggregateToDefaultRoles): a user
# bound to the ClusterRole edit, and one bound to view, by RoleBindings in a watched namespace.
editor=e2e-editor
viewer=e2e-viewer
can() { [[ "$(kubectl auth can-i "${@:2}" --as="$1" 2>/dev/null)" == yes ]]; }
check_user_permissions() {
  local ns="${watched[0]}" checks
  failures=0
  checks="$(wc -l <"$cani_table")"
  kubectl create rolebinding "$editor" --clusterrole=edit --user="$editor" -n "$ns" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl create rolebinding "$viewer" --clusterrole=view --user="$viewer" -n "$ns" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # The controller manager's aggregation controller copies the rules into edit and view.
  wait_until "edit and view to include UCloudJobs (aggregation)" 60 \
    eval 'can "$editor" create ucloudjobs.ucloud.dk -n "$ns" && can "$viewer" list ucloudjobs.ucloud.dk -n "$ns"'
  log "kubectl auth can-i --as=$editor (edit in $ns), --as=$viewer (view in $ns)"
  as="$editor"
  local verb
  for verb in get list watch create update patch delete deletecollection; do
    expect yes "$verb" ucloudjobs.ucloud.dk -n "$ns"
  done
  expect no patch ucloudjobs.ucloud.dk --subresource=status -n "$ns"
  expect no update ucloudjobs.ucloud.dk --subresource=status -n "$ns"
  expect no create ucloudjobs.ucloud.dk -n "$unwatched"
  expect no list ucloudjobs.ucloud.dk -A
  expect yes create pods -n "$ns"  # what a UCloudJob amounts to: edit grants it already
  as="$viewer"
  for verb in get list watch; do
    expect yes "$verb" ucloudjobs.ucloud.dk -n "$ns"
  done
  for verb in create update patch delete deletecollection; do
    expect no "$verb" ucloudjobs.ucloud.dk -n "$ns"
  done
  expect no patch ucloudjobs.ucloud.dk --subresource=status -n "$ns"
  expect no get ucloudjobs.ucloud.dk -n "$unwatched"
  as=""
  ((failures == 0)) || die "$failures user permission check(s) failed (see $cani_table)"
  log "users' permissions as expected ($(($(wc -l <"$cani_table") - checks)) checks)"
}

# ------------------------------------------------------------------------------------ steps
install_chart() {
  local values=(--set image.tag=e2e-local)
  case "$mode" in
    namespaced) values+=(--set "watchNamespaces={$(IFS=,; echo "${watched[*]}")}") ;;
    leader) values+=(--set leaderElection.enabled=true) ;;
  esac
  helm lint --strict "$chart" "${values[@]}" >"$artifacts/helm-lint-$mode.txt" 2>&1 ||
    die "helm lint --strict: $(cat "$artifacts/helm-lint-$mode.txt")"
  log "helm install $release ${values[*]}"
  local t0=$SECONDS
  helm install "$release" "$chart" -n "$system_ns" "${values[@]}" --wait --timeout 3m \
    >"$artifacts/helm-install-$mode.txt" 2>&1 ||
    die "helm install: $(tail -n 20 "$artifacts/helm-install-$mode.txt")"
  log "installed in $((SECONDS - t0))s"
  helm get manifest "$release" -n "$system_ns" >"$work/manifest.yaml"

  kubectl wait --for=condition=Established crd/ucloudjobs.ucloud.dk --timeout=30s >/dev/null
  kubectl rollout status deployment/"$release" -n "$system_ns" --timeout=60s >/dev/null
  kubectl get serviceaccount "$release" -n "$system_ns" >/dev/null
  kubectl get service "$release-metrics" -n "$system_ns" >/dev/null
  local ns clusterroles
  # Besides the users' ClusterRoles <release>-view and -edit, bound to nobody (checked apart).
  kubectl get clusterrole "$release-view" "$release-edit" >/dev/null
  clusterroles="$(kubectl get clusterroles,clusterrolebindings -o name \
    -l "app.kubernetes.io/instance=$release" | grep -vcE "/$release-(view|edit)\$")" || true
  if [[ "$mode" == namespaced ]]; then
    for ns in "${watched[@]}"; do
      kubectl get role,rolebinding "$release" -n "$ns" >/dev/null
    done
    ((clusterroles == 0)) || die "namespaced mode granted $clusterroles cluster-wide RBAC objects to the operator"
  else
    kubectl get clusterrole,clusterrolebinding "$release" "$release-nodes" >/dev/null
    ((clusterroles == 4)) ||
      die "expected the ClusterRoles and ClusterRoleBindings $release and $release-nodes, found $clusterroles"
  fi
  if [[ "$mode" == leader ]]; then
    kubectl get role,rolebinding "$release-leader-election" -n "$system_ns" >/dev/null
  fi
  log "objects in place; Deployment ready on a KWOK node (no process runs there)"
}

# ------------------------------------------------------------------------------------ container mode
engine_cmd=()
setup_engine() {
  local engine="${ENGINE:-}" nofile nproc
  if [[ -z "$engine" ]]; then
    if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
  fi
  case "$engine" in
    docker) engine_cmd=(docker); run_flags=() ;;
    podman)
      # As hack/image.sh: runc, cgroupfs, ulimits within the host's hard limits.
      engine_cmd=(podman --runtime runc --cgroup-manager cgroupfs)
      nofile="$(ulimit -Hn)"; [[ "$nofile" == unlimited || "$nofile" -gt 65536 ]] && nofile=65536
      nproc="$(ulimit -Hu)"; [[ "$nproc" == unlimited || "$nproc" -gt 4096 ]] && nproc=4096
      # --read-only-tmpfs=false: no tmpfs on /run and /var/tmp either, only the /tmp below.
      # --passwd=false: podman would add a passwd line for --user; containerd, CRI-O and Docker
      # do not, so the container starts here as it does on a real node.
      run_flags=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" --read-only-tmpfs=false
        --passwd=false) ;;
    *) die "ENGINE=$engine: docker or podman" ;;
  esac
  export ENGINE="$engine"
}

build_image() {
  if [[ "${E2E_IMAGE_BUILD:-1}" == 1 ]]; then
    log "building $image (hack/image.sh)"
    local t0=$SECONDS
    IMAGE="$image" hack/image.sh >"$artifacts/image-build.log" 2>&1 ||
      die "image build failed: $(tail -n 30 "$artifacts/image-build.log")"
    grep '^image: ' "$artifacts/image-build.log" >&2 || true
    echo "build_s=$((SECONDS - t0))" >>"$artifacts/timings.txt"
  fi
  "${engine_cmd[@]}" image inspect "$image" >/dev/null 2>&1 || die "no image $image"
  local size
  size="$("${engine_cmd[@]}" image inspect --format '{{.Size}}' "$image")"
  echo "image_size_bytes=$size" >>"$artifacts/timings.txt"
  log "image $image: $((size / 1000000)) MB"
}

# The files a pod of the chart's ServiceAccount gets at /var/run/secrets/kubernetes.io/serviceaccount:
# a token, the CA that signs the API server's serving certificate, the namespace. Checked from here
# with curl exactly as the in-cluster client will use them: https://<host>:<port>, that CA, the token.
service_account_files() {
  local dir="$work/serviceaccount-$mode" server ca ca_data who
  mkdir -p "$dir"
  server="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
  if [[ -n "$ca" ]]; then
    cp "$ca" "$dir/ca.crt"
  else
    ca_data="$(kubectl config view --raw --minify \
      -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
    base64 -d <<<"$ca_data" >"$dir/ca.crt"
  fi
  kubectl create token "$release" -n "$system_ns" --duration=2h >"$dir/token"
  printf '%s' "$system_ns" >"$dir/namespace"
  # As the kubelet does with fsGroup: readable by the pod's group only.
  chown -R 65532:65532 "$dir"
  chmod 0750 "$dir" && chmod 0440 "$dir"/*
  api_host="${server#https://}"
  api_host="${api_host%%/*}"
  api_port="${api_host##*:}"
  api_host="${api_host%:*}"
  api_host="${api_host#[}" && api_host="${api_host%]}"
  [[ "$api_port" =~ ^[0-9]+$ ]] || die "cannot read the API server's port from $server"
  curl -sS --fail --cacert "$dir/ca.crt" -H "Authorization: Bearer $(<"$dir/token")" \
    -o /dev/null "https://$api_host:$api_port/version" ||
    die "https://$api_host:$api_port with the CA and token for the container failed (TLS or auth)"
  who="$(kubectl --kubeconfig=/dev/null --server="https://$api_host:$api_port" \
    --certificate-authority="$dir/ca.crt" --token="$(<"$dir/token")" \
    auth whoami -o jsonpath='{.status.userInfo.username}')"
  [[ "$who" == "$sa_user" ]] || die "the token authenticates as '$who', not $sa_user"
  log "in-cluster files for $who: API server $api_host:$api_port, serving certificate verified against $(openssl x509 -in "$dir/ca.crt" -noout -subject 2>/dev/null || echo ca.crt)"
  sa_dir="$dir"
}

run_container() {  # ARGS...: the operator's flags (no kubeconfig: the in-cluster configuration)
  service_account_files
  container="ucloud-operator-$UCLOUD_CLUSTER-$mode"
  "${engine_cmd[@]}" rm --force "$container" >/dev/null 2>&1 || true
  local -a env_flags=()
  local kv
  for kv in "${env_vars[@]}"; do env_flags+=(--env "$kv"); done
  local tmpfs=/tmp:rw,size=64m,mode=1777
  local -a run=(
    "${engine_cmd[@]}" run --name "$container" --network host
    # The chart's pod: readOnlyRootFilesystem with an emptyDir on /tmp, runAsUser/Group 65532,
    # no capabilities, no privilege escalation, its resource limits.
    --read-only --tmpfs "$tmpfs" --user 65532:65532
    --cap-drop ALL --security-opt no-new-privileges
    --memory 512m --cpus 1
    "${run_flags[@]}"
    --volume "$sa_dir:/var/run/secrets/kubernetes.io/serviceaccount:ro"
    --env "KUBERNETES_SERVICE_HOST=$api_host" --env "KUBERNETES_SERVICE_PORT=$api_port"
    --add-host "kubernetes.default.svc:$api_host" --add-host "kubernetes.default:$api_host"
    --add-host "kubernetes:$api_host"
    "${env_flags[@]}"
    "$image" "$@"
  )
  log "operator: ${run[*]}"
  # Attached, in the background: the podman client stands for the process (SIGTERM is forwarded
  # to the container, the client exits with the container's exit code); the log is its output.
  "${run[@]}" </dev/null >"$operator_log" 2>&1 &
  operator_pid=$!
}

run_tests() {
  local ns_env=()
  # namespaced: the second watched namespace; cluster: a namespace made after the operator started.
  [[ "$mode" == namespaced ]] && ns_env=(UCLOUD_E2E_NAMESPACE="${watched[1]}")
  # A job where the operator must not look.
  if [[ "$mode" == namespaced ]]; then
    kubectl apply -n "$unwatched" -f manifests/examples/one-replica.yaml >/dev/null
  fi
  log "pytest tests/e2e"
  local t0=$SECONDS
  env UCLOUD_E2E=1 KUBECONFIG="$KUBECONFIG" UCLOUD_E2E_METRICS_URL="$metrics_url" \
    UCLOUD_E2E_HEALTH_URL="$health_url" UCLOUD_E2E_OPERATOR_LOG="$operator_log" \
    "${ns_env[@]}" "$python" -m pytest tests/e2e -q -p no:cacheprovider \
    --junitxml="$artifacts/junit-$mode.xml" || die "tests/e2e failed"
  log "tests passed in $((SECONDS - t0))s"
  operator_alive || die "the operator died during the tests"
  # Namespaced mode grants no nodes (nothing cluster-wide): the operator's one warning about it
  # is expected there; any other refusal is a missing permission.
  local refusals
  refusals="$(grep -niE 'forbidden|cannot (get|list|watch|create|patch|update|delete) ' "$operator_log" |
    { if [[ "$mode" == namespaced ]]; then grep -v 'may not list or watch nodes'; else cat; fi; })" || true
  if [[ -n "$refusals" ]]; then
    echo "$refusals" >&2
    die "the operator was refused an API call (above)"
  fi
  if [[ "$mode" == namespaced ]] && ! grep -q 'may not list or watch nodes' "$operator_log"; then
    die "namespaced mode: no warning that nodes cannot be read"
  fi
  if [[ "$mode" == namespaced ]]; then
    local name status
    name="$(kubectl get ucloudjobs -n "$unwatched" -o name)"
    status="$(kubectl get "$name" -n "$unwatched" -o jsonpath='{.status}')"
    [[ -z "$status" ]] || die "a job in unwatched namespace $unwatched got a status: $status"
    [[ -z "$(kubectl get pods -n "$unwatched" -o name)" ]] || die "pods made in $unwatched"
    kubectl delete ucloudjobs --all -n "$unwatched" >/dev/null
    log "the job in $unwatched was left alone"
  fi
}

uninstall_and_check_keep() {
  kubectl apply -n "${watched[0]}" -f - >/dev/null <<'YAML'
apiVersion: ucloud.dk/v1
kind: UCloudJob
metadata:
  name: keep-check
spec:
  template:
    spec:
      containers:
        - name: main
          image: busybox
YAML
  log "helm uninstall $release"
  helm uninstall "$release" -n "$system_ns" --wait --timeout 2m >/dev/null
  kubectl get crd ucloudjobs.ucloud.dk >/dev/null 2>&1 || die "the CRD was deleted by helm uninstall"
  kubectl get ucloudjob keep-check -n "${watched[0]}" >/dev/null 2>&1 ||
    die "UCloudJob keep-check is gone after helm uninstall"
  local left
  left="$(kubectl get deployments,services,serviceaccounts,roles,rolebindings -A -o name \
    -l "app.kubernetes.io/instance=$release"; kubectl get clusterroles,clusterrolebindings -o name \
    -l "app.kubernetes.io/instance=$release")"
  [[ -z "$left" ]] || die "left after uninstall: $left"
  [[ "$(kubectl auth can-i list pods -n "${watched[0]}" --as="$sa_user" 2>/dev/null)" == no ]] ||
    die "the ServiceAccount still has permissions after uninstall"
  wait_until "edit to lose UCloudJobs after uninstall (aggregation)" 60 \
    eval '! can "$editor" create ucloudjobs.ucloud.dk -n "${watched[0]}"'
  log "uninstalled: CRD and UCloudJob kept, the rest removed"
  kubectl delete ucloudjob keep-check -n "${watched[0]}" >/dev/null
}

# ------------------------------------------------------------------------------------ main
if [[ "$operator_kind" == container ]]; then
  setup_engine
  build_image
  # What a pod sees: KUBERNETES_SERVICE_HOST/PORT (the client's in-cluster configuration) and the
  # name kubernetes.default.svc on port 443 (kopf's login_with_service_account uses only that
  # name, not the two variables). So the API server listens on 443 and the name is 127.0.0.1.
  if [[ "$api_port_wanted" != random ]]; then
    if ss -Hltn "sport = :$api_port_wanted" 2>/dev/null | grep -q .; then
      die "port $api_port_wanted is taken: the API server of $UCLOUD_CLUSTER needs it (E2E_APISERVER_PORT)"
    fi
    export UCLOUD_KWOKCTL_ARGS="${UCLOUD_KWOKCTL_ARGS:+$UCLOUD_KWOKCTL_ARGS }--kube-apiserver-port=$api_port_wanted"
  fi
fi
cluster_up
reset_cluster
: >"$cani_table"
for mode in "${modes[@]}"; do
  [[ "$mode" =~ ^(namespaced|cluster|leader)$ ]] || die "unknown mode $mode"
  mode_start=$SECONDS
  create_namespaces
  install_chart
  check_permissions
  check_user_permissions
  sa_kubeconfig="$(service_account_kubeconfig)"
  start_operator "$sa_kubeconfig"
  run_tests
  stop_operator
  log "operator stopped"
  uninstall_and_check_keep
  log "mode passed in $((SECONDS - mode_start))s"
done
mode=""
{ echo "mode|expected|got|kubectl auth can-i ... --as=$sa_user"; cat "$cani_table"; } |
  column -t -s '|' >"$cani_table.tmp" && mv "$cani_table.tmp" "$cani_table"
log "can-i: $(($(wc -l <"$cani_table") - 1)) checks as expected: $cani_table"
if [[ "$operator_kind" == container ]]; then
  log "image $image: $(tr '\n' ' ' <"$artifacts/timings.txt")"
fi
