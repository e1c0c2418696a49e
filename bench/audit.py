"""API requests per job by client, verb and resource, from the API server's audit log.

Every phase runs in a namespace of its own, so a request belongs to a phase by
`objectRef.namespace`, counted until the phase's end (the cleanup after it is not counted).
Clients are told apart by user agent (every component authenticates as the same kwokctl admin):

    operator        kopf/* (its watches), OpenAPI-Generator/* (the kubernetes client's writes),
                    or any agent naming ucloud-operator
    job-controller  kube-controller-manager/.../job-controller
    kcm:<name>      other kube-controller-manager controllers (garbage collector, endpoints, ...)
    scheduler       kube-scheduler/*
    kwok            kwok-controller/* (the fake kubelets)
    bench           ucloud-bench/* (this benchmark: job creation, watches, calibration)

Writes are create, update, patch, delete and deletecollection. The audit policy
(bench/audit-policy.yaml) logs the parents' status writes with their body, which gives a second,
server-side timing of the same latencies (microsecond `stageTimestamp` of the write that made the
parent RUNNING / final, against kwok's first `pods/status` patch of each replica, which is the one
that makes it Running).
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from stats import summary

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "EXPIRED"})


def client_of(user_agent: str) -> str:
    ua = user_agent or ""
    if ua.startswith("ucloud-bench/"):
        return "bench"
    if "ucloud-operator" in ua or ua.startswith(("kopf/", "OpenAPI-Generator/")):
        return "operator"
    if ua.startswith("kube-controller-manager/"):
        name = ua.rsplit("/", 1)[-1]
        return "job-controller" if name == "job-controller" else f"kcm:{name}"
    if ua.startswith("kube-scheduler/"):
        return "scheduler"
    if ua.startswith("kwok"):
        return "kwok"
    if ua.startswith("kube-apiserver/"):
        return "apiserver"
    return "other:" + ua.split("/", 1)[0][:40]


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class NamespaceAudit:
    end: float  # Unix time; requests after it (cleanup) are not counted
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    kwok_pod_status: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    parent_running: dict[str, float] = field(default_factory=dict)
    parent_final: dict[str, float] = field(default_factory=dict)
    lines: int = 0
    complete: bool = True  # the files reach the phase's end (rotation, deleted tail)


def scan(
    paths: Sequence[str], namespaces: Mapping[str, float], replicas: int
) -> tuple[dict[str, NamespaceAudit], float]:
    """One pass over the audit log files (rotated backups first, oldest first) for the given
    namespaces (name -> end Unix time); also returns the last timestamp the files hold."""
    out = {ns: NamespaceAudit(end) for ns, end in namespaces.items()}
    last = 0.0
    for line in _lines(paths):
        if b'"ResponseComplete"' not in line:
            continue
        event = orjson.loads(line)
        ref = event.get("objectRef") or {}
        audit = out.get(ref.get("namespace", ""))
        if audit is None:
            continue
        at = stamp(event["stageTimestamp"])
        last = max(last, at)
        if at > audit.end:
            continue
        audit.lines += 1
        client = client_of(event.get("userAgent", ""))
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        verb = event.get("verb", "")
        code = (event.get("responseStatus") or {}).get("code", 0)
        audit.counts[client][f"{verb} {resource}"] += 1
        if code >= 400:
            audit.counts[client][f"{verb} {resource} (HTTP {code})"] += 1
        if client == "kwok" and resource == "pods/status" and verb == "patch" and code < 400:
            # Refused patches (a few 422s in a burst) changed nothing: counted as a pod's second
            # write, they ended it at its start and gave its job a 30 s completion.
            audit.kwok_pod_status[ref.get("name", "")].append(at)
        elif resource in ("ucloudjobs/status", "jobs/status") and verb in ("patch", "update"):
            status = ((event.get("requestObject") or {}).get("status")) or {}
            name = ref.get("name", "")
            if resource == "ucloudjobs/status":
                state = status.get("state")
                if state == "RUNNING":
                    audit.parent_running.setdefault(name, at)
                elif state in FINAL_STATES:
                    audit.parent_final.setdefault(name, at)
            else:
                if (status.get("ready") or 0) >= replicas:
                    audit.parent_running.setdefault(name, at)
                if any(
                    c.get("type") == "Complete" and c.get("status") == "True"
                    for c in status.get("conditions") or []
                ):
                    audit.parent_final.setdefault(name, at)
    for audit in out.values():
        audit.complete = last >= audit.end
    return out, last


def _lines(paths: Sequence[str]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as f:
            yield from f


def files(main_log: str) -> list[str]:
    """The audit log and its rotated backups (`<stem>-<timestamp>.log`), oldest first."""
    stem = main_log[: -len(".log")] if main_log.endswith(".log") else main_log
    backups = sorted(glob.glob(glob.escape(stem) + "-*.log"))
    return [*backups, *([main_log] if os.path.exists(main_log) else [])]


def report(
    audit: NamespaceAudit, jobs: int, pod_job: Mapping[str, str], system: str, replicas: int
) -> dict[str, Any]:
    """Per-job request counts and the audit-log latencies of one phase."""
    per_job: dict[str, dict[str, float]] = {}
    writes_by_client: dict[str, float] = {}
    reads_by_client: dict[str, int] = {}
    total_writes = 0
    for client, counts in sorted(audit.counts.items()):
        per_job[client] = {k: round(v / jobs, 3) for k, v in sorted(counts.items())}
        writes = sum(
            v for k, v in counts.items() if k.split(" ", 1)[0] in WRITE_VERBS and "(HTTP" not in k
        )
        writes_by_client[client] = round(writes / jobs, 3)
        reads_by_client[client] = sum(
            v for k, v in counts.items() if k.split(" ", 1)[0] in ("get", "list", "watch")
        )
        total_writes += writes
    # Server-side latencies: pods' first accepted kwok status patch (Running) and their second
    # (terminal).
    running_at: dict[str, list[float]] = defaultdict(list)
    terminated_at: dict[str, list[float]] = defaultdict(list)
    for pod, stamps in audit.kwok_pod_status.items():
        job = pod_job.get(pod)
        if job is None:
            continue
        stamps.sort()
        running_at[job].append(stamps[0])
        if len(stamps) > 1:
            terminated_at[job].append(stamps[1])
    running: list[float] = []
    completion: list[float] = []
    for job, parent in audit.parent_running.items():
        if len(running_at.get(job, ())) >= replicas:
            running.append(parent - max(running_at[job]))
    for job, parent in audit.parent_final.items():
        ends = terminated_at.get(job)
        if ends:
            completion.append(parent - (min(ends) if system == "operator" else max(ends)))
    return {
        "requests_per_job_by_client": per_job,
        "writes_per_job_by_client": writes_by_client,
        "reads_total_by_client": reads_by_client,
        "writes_per_job_all_clients": round(total_writes / jobs, 3),
        "audit_events_counted": audit.lines,
        "audit_complete": audit.complete,
        "audit_latency_seconds": {"running": summary(running), "completion": summary(completion)},
    }


def namespaces_in(path: str, limit: int = 1_000_000) -> Iterable[str]:
    """Namespaces seen in the first `limit` lines (a debugging aid)."""
    seen: set[str] = set()
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            ns = (orjson.loads(line).get("objectRef") or {}).get("namespace")
            if ns:
                seen.add(ns)
    return sorted(seen)
