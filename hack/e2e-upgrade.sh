#!/usr/bin/env bash
# `make e2e-upgrade`: `helm upgrade` from an earlier commit's chart and operator to the working
# tree's, with jobs in flight, then `helm rollback`. Local control plane (KWOK nodes), the
# operator run as the chart's ServiceAccount as in hack/e2e-local.sh (whose steps it shares
# through hack/lib/e2e.sh).
#
#   1. the chart and operator/ of UPGRADE_FROM (`git archive`, into a temp folder); that commit's
#      operator must start on this venv's dependencies (PYTHONPATH=<old tree>/operator)
#   2. helm install the old chart (default values); the old operator runs; four jobs:
#        upg-done      1 replica exits 0 at once: SUCCESS Completed before the upgrade
#        upg-gang      3 replicas that run until told to exit (after the upgrade)
#        upg-cancel    2 replicas that run; cancelled after the upgrade
#        upg-deadline  1 replica, activeDeadlineSeconds E2E_UPGRADE_DEADLINE (90), RUNNING last
#   3. helm upgrade --reuse-values to the working tree's chart (as docs/operations.md says):
#      `helm history` has 2 revisions; the CRD in the cluster has manifests/crd.yaml's versions
#      (schema, columns, subresources) and the new chart's label, and is the same object (uid)
#   4. the old operator stops, the working tree's starts; the three jobs are still RUNNING with
#      the histories the old operator wrote, and the deadline has not yet fallen due. Then rank 0
#      of upg-gang exits 0 and upg-cancel is cancelled. Each job ends as the rules say:
#        upg-gang      SUCCESS Completed         IN_QUEUE RUNNING SUCCESS
#        upg-cancel    SUCCESS Cancelled         IN_QUEUE RUNNING CANCELING SUCCESS
#        upg-deadline  EXPIRED DeadlineExceeded  IN_QUEUE RUNNING EXPIRED
#        upg-done      its status as before the upgrade (no entry added or rewritten)
#      every job is the one created at the start (uid): none lost; and each history begins with
#      the entries the old operator wrote, as it wrote them
#   5. helm rollback to revision 1: the Deployment and the CRD carry the old chart's label
#      again, the CRD is the same object, the jobs are all listed unchanged; the old operator
#      runs again, leaves them alone, and a new job upg-after goes IN_QUEUE RUNNING SUCCESS
# On failure: the jobs (state, history), the operator log tail, events, and a dump in
# $UCLOUD_ARTIFACTS/e2e-upgrade. The cluster is deleted at the end, also on failure.
#
# Environment:
#   UPGRADE_FROM=9584da2...   the commit to upgrade from (default: the chart's last commit before
#                             7027cf5, the chart-conventions change; chart version 0.1.0)
#   E2E_UPGRADE_CLUSTER=e2e-upgrade   the local cluster's name; this script owns it (as E2E_CLUSTER
#                             for e2e-local); UCLOUD_CLUSTER is ignored (the Makefile exports it)
#   E2E_UPGRADE_DEADLINE=90   upg-deadline's activeDeadlineSeconds: long enough to outlast the
#                             upgrade (the script fails, saying so, when it does not)
#   E2E_KEEP_CLUSTER=1        keep the cluster for inspection
#   UCLOUD_ARTIFACTS          where logs go (default ./artifacts)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source hack/lib/e2e.sh

name=e2e-upgrade
use_cluster "${E2E_UPGRADE_CLUSTER:-e2e-upgrade}"
from="${UPGRADE_FROM:-9584da2f3dd91f97c6d7d191cb76ee0e7a667fe8}"
deadline_s="${E2E_UPGRADE_DEADLINE:-90}"
ns=e2e-upgrade
watched=("$ns")
unwatched=""
e2e_begin

# ------------------------------------------------------------------------------------ checks
# One Python program for what the shell cannot compare: jobs, the CRD, helm history.
cat >"$work/check.py" <<'PY'
import json, sys
import yaml

FINAL = {"SUCCESS", "FAILURE", "EXPIRED"}


def jobs(path):
    return {j["metadata"]["name"]: j for j in json.load(open(path))["items"]}


def history(job):
    return [u["state"] for u in (job.get("status") or {}).get("updates") or []]


def expect(path, *specs):
    """JOB=STATE/REASON/HISTORY (states oldest first, comma-separated)."""
    found, bad = jobs(path), []
    for spec in specs:
        name, want = spec.split("=")
        state, reason, hist = want.split("/")
        job = found.get(name)
        if job is None:
            bad.append(f"{name}: gone")
            continue
        status, got = job.get("status") or {}, history(job)
        print(f"  {name:13} {status.get('state')} {status.get('reason')}: {' '.join(got)}")
        if (status.get("state"), status.get("reason")) != (state, reason):
            bad.append(f"{name}: {status.get('state')} {status.get('reason')}, expected {state} {reason}")
        if got != hist.split(","):
            bad.append(f"{name}: history {got}, expected {hist.split(',')}")
        finals = [s for s in got if s in FINAL]
        if got[:1] != ["IN_QUEUE"] or (state in FINAL and (len(finals) != 1 or got[-1] not in FINAL)):
            bad.append(f"{name}: a history starts IN_QUEUE and has one final entry, the last: {got}")
    return bad


def kept(before, after):
    """Every job of the `before` listing is in the `after` one, the same object (uid)."""
    old, new, bad = jobs(before), jobs(after), []
    for name, job in old.items():
        if name not in new:
            bad.append(f"{name}: gone")
        elif new[name]["metadata"]["uid"] != job["metadata"]["uid"]:
            bad.append(f"{name}: a new object (uid {job['metadata']['uid']} -> {new[name]['metadata']['uid']})")
    return bad


def same(before, after, *names):
    """kept, each history only added to, and the written status of `names` (all when none are
    given) as in the `before` listing."""
    old, new, bad = jobs(before), jobs(after), kept(before, after)
    for name in set(old) & set(new):
        a, b = ((j[name].get("status") or {}).get("updates") or [] for j in (old, new))
        if b[: len(a)] != a:
            bad.append(f"{name}: history rewritten: {a} -> {b}")
    keys = ("state", "reason", "message", "startedAt", "expiresAt", "finishedAt", "updates")
    for name in names or old:
        if name in new:
            a, b = old[name].get("status") or {}, new[name].get("status") or {}
            changed = [k for k in keys if a.get(k) != b.get(k)]
            if changed:
                bad.append(f"{name}: status changed in {changed}: {[a.get(k) for k in changed]} -> {[b.get(k) for k in changed]}")
    return bad


def crd(path, manifest):
    """The CRD in the cluster has the file's names, scope and versions."""
    live, want, bad = json.load(open(path))["spec"], yaml.safe_load(open(manifest))["spec"], []
    for key in ("group", "scope"):
        if live[key] != want[key]:
            bad.append(f"spec.{key}: {live[key]} != {want[key]}")
    # The API server fills in names the file leaves out (listKind, singular).
    if {k: v for k, v in live["names"].items() if k in want["names"]} != want["names"]:
        bad.append(f"spec.names: {live['names']} != {want['names']}")
    if [v["name"] for v in live["versions"]] != [v["name"] for v in want["versions"]]:
        bad.append(f"versions {[v['name'] for v in live['versions']]} != {[v['name'] for v in want['versions']]}")
    for got, exp in zip(live["versions"], want["versions"]):
        for key in exp:
            if got.get(key) != exp[key]:
                bad.append(f"spec.versions[{exp['name']}].{key} differs from the file")
    return bad


def revisions(path, count, description):
    """helm history: `count` revisions, the last deployed with `description`, the rest superseded."""
    revs, count = json.load(open(path)), int(count)
    for r in revs:
        print(f"  revision {r['revision']}: {r['status']}, {r['chart']}, {r['description']}")
    states = [r["status"] for r in revs]
    if states != ["superseded"] * (count - 1) + ["deployed"] or revs[-1]["description"] != description:
        return [f"expected {count} revisions, the last deployed: {description}"]
    return []


bad = {"expect": expect, "kept": kept, "same": same, "crd": crd, "history": revisions}[sys.argv[1]](*sys.argv[2:])
for line in bad:
    print(f"  {line}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
check() { "$python" "$work/check.py" "$@" >&2; }

list_jobs() { kubectl get ucloudjobs -n "$ns" -o json >"$artifacts/jobs-$1.json"; }

expect_chart() {  # VERSION: the Deployment and the CRD were last applied by that chart version
  local want="ucloud-operator-$1" label='{.metadata.labels.helm\.sh/chart}' got
  got="$(kubectl get deployment "$release" -n "$system_ns" -o jsonpath="$label")"
  [[ "$got" == "$want" ]] || die "Deployment $release: helm.sh/chart is '$got', expected $want"
  got="$(kubectl get crd ucloudjobs.ucloud.dk -o jsonpath="$label")"
  [[ "$got" == "$want" ]] || die "the CRD: helm.sh/chart is '$got', expected $want"
  [[ "$(kubectl get crd ucloudjobs.ucloud.dk -o jsonpath='{.metadata.uid}')" == "$crd_uid" ]] ||
    die "the CRD is a new object: it was deleted on the way (and every job with it)"
  [[ "$(kubectl get crd ucloudjobs.ucloud.dk \
    -o jsonpath='{.metadata.annotations.helm\.sh/resource-policy}')" == keep ]] ||
    die "the CRD lost helm.sh/resource-policy: keep"
  kubectl wait --for=condition=Established crd/ucloudjobs.ucloud.dk --timeout=30s >/dev/null
}

expect_revisions() {  # COUNT DESCRIPTION
  helm history "$release" -n "$system_ns" -o json >"$artifacts/helm-history-$1.json"
  check history "$artifacts/helm-history-$1.json" "$@" || die "helm history (above)"
}

job() {  # NAME REPLICAS [SPEC LINE] [POD ANNOTATIONS AS "key: value" LINES]
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: ucloud.dk/v1
kind: UCloudJob
metadata:
  name: $1
spec:
  replicas: $2
  ${3:-}
  template:
    metadata:
      annotations: {${4:-}}
    spec:
      containers:
        - name: main
          image: busybox
          command: ["sleep", "3600"]
YAML
}

wait_state() {  # STATE SECONDS JOB...
  local state="$1" seconds="$2" job
  shift 2
  for job in "$@"; do
    kubectl wait --for=jsonpath='{.status.state}'="$state" "ucloudjob/$job" -n "$ns" \
      --timeout="${seconds}s" >/dev/null 2>&1 ||
      die "$job is not $state after ${seconds}s: $(kubectl get ucloudjob "$job" -n "$ns" \
        -o jsonpath='{.status.state} {.status.reason}: {.status.updates[*].state}')"
  done
}

no_tracebacks() {
  ! grep -q Traceback "$operator_log" || die "the operator logged a traceback ($operator_log)"
}

# The package a PYTHONPATH (empty: the venv's) gives: where ucloud_operator comes from.
package_dir() {
  PYTHONPATH="$1" "$python" -c \
    'import os, ucloud_operator.__main__ as m; print(os.path.dirname(os.path.dirname(m.__file__)))'
}

# ------------------------------------------------------------------------------------ main
from="$(git rev-parse --verify --quiet "$from^{commit}")" ||
  die "UPGRADE_FROM=${UPGRADE_FROM:-} is no commit of this clone (a shallow clone: git fetch --unshallow)"
old="$work/old"
mkdir -p "$old"
git archive "$from" helm/ucloud-operator operator | tar -x -C "$old"
old_chart="$old/helm/ucloud-operator"
old_version="$(helm show chart "$old_chart" | sed -n 's/^version: //p')"
new_version="$(helm show chart "$chart" | sed -n 's/^version: //p')"
[[ "$old_version" != "$new_version" ]] ||
  die "chart version $new_version at ${from:0:7} and in the working tree: bump helm/ucloud-operator/Chart.yaml's version (a rollback could not be told apart)"
[[ "$(package_dir "$old/operator")" == "$old/operator" ]] ||
  die "PYTHONPATH=$old/operator does not load that commit's ucloud_operator"
[[ "$(package_dir "")" == "$root/operator" ]] || die "the venv's ucloud_operator is not $root/operator"
summary="${from:0:7} (chart $old_version) -> working tree (chart $new_version) -> rollback"
log "upgrade from ${from:0:7} ($(git log -1 --format=%s "$from" | cut -c1-60)...), chart $old_version -> $new_version"

cluster_up
reset_cluster
create_namespaces

mode=old
log "helm install $release (chart $old_version, from ${from:0:7})"
helm install "$release" "$old_chart" -n "$system_ns" --set image.tag=e2e-upgrade --wait --timeout 3m \
  >"$artifacts/helm-install.txt" 2>&1 || die "helm install: $(tail -n 20 "$artifacts/helm-install.txt")"
crd_uid="$(kubectl get crd ucloudjobs.ucloud.dk -o jsonpath='{.metadata.uid}')"
expect_chart "$old_version"
helm get manifest "$release" -n "$system_ns" >"$work/manifest.yaml"
start_operator "$(service_account_kubeconfig)" "$old/operator"

log "jobs under the old operator"
job upg-done 1 "" '"ucloud.dk/test-exit-code": "0", "ucloud.dk/test-exit-after": "3s"'
job upg-gang 3
job upg-cancel 2
wait_state SUCCESS 60 upg-done
wait_state RUNNING 60 upg-gang upg-cancel
# Last, so that its deadline falls due as late after the upgrade as it can.
job upg-deadline 1 "activeDeadlineSeconds: $deadline_s"
wait_state RUNNING 60 upg-deadline
list_jobs before
check expect "$artifacts/jobs-before.json" upg-done=SUCCESS/Completed/IN_QUEUE,RUNNING,SUCCESS \
  upg-gang=RUNNING/AllReplicasRunning/IN_QUEUE,RUNNING upg-cancel=RUNNING/AllReplicasRunning/IN_QUEUE,RUNNING \
  upg-deadline=RUNNING/AllReplicasRunning/IN_QUEUE,RUNNING || die "jobs before the upgrade (above)"

log "helm upgrade $release --reuse-values (chart $new_version, the working tree)"
t0=$SECONDS
helm upgrade "$release" "$chart" -n "$system_ns" --reuse-values --wait --timeout 3m \
  >"$artifacts/helm-upgrade.txt" 2>&1 || die "helm upgrade: $(tail -n 20 "$artifacts/helm-upgrade.txt")"
log "upgraded in $((SECONDS - t0))s"
expect_revisions 2 "Upgrade complete"
expect_chart "$new_version"
kubectl get crd ucloudjobs.ucloud.dk -o json >"$artifacts/crd-upgraded.json"
check crd "$artifacts/crd-upgraded.json" manifests/crd.yaml || die "the CRD after the upgrade is not manifests/crd.yaml's (above)"
log "the CRD is manifests/crd.yaml's, applied by chart $new_version"

no_tracebacks
stop_operator
mode=new
helm get manifest "$release" -n "$system_ns" >"$work/manifest.yaml"
start_operator "$(service_account_kubeconfig)"
list_jobs new-started
check same "$artifacts/jobs-before.json" "$artifacts/jobs-new-started.json" || die "the new operator changed jobs on start (above)"
left="$(( $(date -d "$(kubectl get ucloudjob upg-deadline -n "$ns" -o jsonpath='{.status.expiresAt}')" +%s) - $(date +%s) ))"
((left > 0)) || die "upg-deadline fell due before the new operator was ready: raise E2E_UPGRADE_DEADLINE ($deadline_s)"
log "the jobs are as the old operator left them; upg-deadline falls due in ${left}s"

kubectl annotate pod upg-gang-0 -n "$ns" ucloud.dk/test-exit-code=0 >/dev/null
kubectl patch ucloudjob upg-cancel -n "$ns" --type merge -p '{"spec":{"cancel":true}}' >/dev/null
log "upg-gang's rank 0 exits 0, upg-cancel is cancelled"
wait_state SUCCESS 60 upg-gang upg-cancel
wait_state EXPIRED $((left + 60)) upg-deadline
list_jobs after
check expect "$artifacts/jobs-after.json" upg-gang=SUCCESS/Completed/IN_QUEUE,RUNNING,SUCCESS \
  upg-cancel=SUCCESS/Cancelled/IN_QUEUE,RUNNING,CANCELING,SUCCESS \
  upg-deadline=EXPIRED/DeadlineExceeded/IN_QUEUE,RUNNING,EXPIRED \
  upg-done=SUCCESS/Completed/IN_QUEUE,RUNNING,SUCCESS || die "jobs after the upgrade (above)"
check same "$artifacts/jobs-before.json" "$artifacts/jobs-after.json" upg-done ||
  die "a job lost, a history rewritten, or upg-done's status changed (above)"
[[ "$(kubectl get ucloudjobs -n "$ns" -o name | wc -l)" == 4 ]] || die "not the four jobs"
no_tracebacks
log "every job ended as the rules say, under the new operator"

stop_operator
mode=rollback
log "helm rollback $release 1"
helm rollback "$release" 1 -n "$system_ns" --wait --timeout 3m >"$artifacts/helm-rollback.txt" 2>&1 ||
  die "helm rollback: $(tail -n 20 "$artifacts/helm-rollback.txt")"
expect_revisions 3 "Rollback to 1"
expect_chart "$old_version"
list_jobs rolled-back
check same "$artifacts/jobs-after.json" "$artifacts/jobs-rolled-back.json" || die "jobs changed by the rollback (above)"
log "rolled back: chart $old_version, the CRD and the jobs kept"
helm get manifest "$release" -n "$system_ns" >"$work/manifest.yaml"
start_operator "$(service_account_kubeconfig)" "$old/operator"
job upg-after 1 "" '"ucloud.dk/test-exit-code": "0", "ucloud.dk/test-exit-after": "3s"'
wait_state SUCCESS 60 upg-after
list_jobs end
check expect "$artifacts/jobs-end.json" upg-after=SUCCESS/Completed/IN_QUEUE,RUNNING,SUCCESS ||
  die "upg-after under the rolled-back operator (above)"
check same "$artifacts/jobs-after.json" "$artifacts/jobs-end.json" upg-done upg-gang upg-cancel upg-deadline ||
  die "the old operator changed finished jobs (above)"
no_tracebacks
log "the old operator runs the rolled-back release: upg-after SUCCESS"
mode=""
