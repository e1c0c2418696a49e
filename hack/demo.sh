#!/usr/bin/env bash
# `make demo`: a local control plane, the CRD, the operator and the examples, watched live.
# Ctrl-C stops the watch and the operator; `make cluster-down` removes the cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kubeconfig="$(hack/cluster.sh up | tail -n1)"
bin="$(hack/build-control-plane.sh | tail -n1)"
export KUBECONFIG="$kubeconfig" PATH="$bin:$PATH"
echo "demo: cluster up; export KUBECONFIG=$kubeconfig"

kubectl apply --server-side -f manifests/crd.yaml >/dev/null
kubectl wait --for=condition=Established crd/ucloudjobs.ucloud.dk --timeout=30s >/dev/null
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl delete ucloudjobs --all -n demo --wait=true >/dev/null

log="${TMPDIR:-/tmp}/ucloud-operator-demo.log"
.venv/bin/python -m ucloud_operator --namespace demo >"$log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT
echo "demo: operator running (pid $operator, log $log)"

# KWOK runs no containers: template annotations tell its stages what each replica does
# (hack/kwok-stages.yaml). hello exits 0 after 15 s, gang exits 1 after 25 s; timed expires.
.venv/bin/python - <<'PY' | kubectl apply -n demo -f - >/dev/null
import sys, yaml
exits = {"hello": ("0", "15s"), "gang": ("1", "25s")}
docs = []
for name in ("one-replica", "three-replicas", "with-deadline"):
    job = yaml.safe_load(open(f"manifests/examples/{name}.yaml"))
    if job["metadata"]["name"] in exits:
        code, after = exits[job["metadata"]["name"]]
        meta = job["spec"]["template"].setdefault("metadata", {})
        meta.setdefault("annotations", {}).update(
            {"ucloud.dk/test-exit-code": code, "ucloud.dk/test-exit-after": after})
    docs.append(job)
yaml.safe_dump_all(docs, sys.stdout)
PY
echo "demo: applied manifests/examples; watching for ${DEMO_SECONDS:-120}s (Ctrl-C to stop)"
echo "demo: try  kubectl -n demo patch ujob/gang --type=merge -p '{\"spec\":{\"cancel\":true}}'"
timeout "${DEMO_SECONDS:-120}" kubectl get ucloudjobs -n demo -o wide -w || true
