"""What the phases' jobs cost the API server, counted in the audit log: requests and writes per
job by client, the operator's writes beside the issue's minimum, and the pipeline bound C / W."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import analysis
import audit
from phase import Phase
from progress import log

MIN_WRITES_PER_STATE_CHANGE = 2  # one status patch and one Event


def attach_audit(
    files: list[str],
    items: list[tuple[dict[str, Any], str, float, dict[str, str]]],
    ceiling: float,
    replicas: int,
) -> None:
    """Add `api` and `pipeline_bound` to phase results: (result, namespace, end, pod -> job)."""
    size = sum(os.path.getsize(f) for f in files)
    log(f"reading the audit log ({len(files)} file(s), {size / 1e6:.0f} MB)")
    scanned, _ = audit.scan(files, {ns: end for _, ns, end, _ in items}, replicas)
    for result, namespace, _, pod_job in items:
        system = "operator" if result["system"] == "operator" else "jobs"
        counted = audit.report(scanned[namespace], result["n"], pod_job, system, replicas)
        api = result["api"] = counted
        writes = counted["writes_per_job_all_clients"]
        if system == "operator":
            transitions = result["throughput"]["transitions"] / max(1, result["finished"])
            api["operator_writes_per_job"] = counted["writes_per_job_by_client"].get(
                "operator", 0.0
            )
            api["state_changes_per_job"] = round(transitions, 3)
            api["operator_minimum_writes_per_job"] = round(
                replicas + (1 if replicas > 1 else 0) + MIN_WRITES_PER_STATE_CHANGE * transitions,
                3,
            )
        else:
            api["job_controller_writes_per_job"] = counted["writes_per_job_by_client"].get(
                "job-controller", 0.0
            )
        result.pop("pipeline_bound", None)
        if writes:
            bound = ceiling / writes
            jps = result["throughput"]["jobs_per_second"] or 0.0
            result["pipeline_bound"] = {
                "writes_per_job_all_components": writes,
                "jobs_per_second": round(bound, 2),
                "transitions_per_second": round(3 * bound, 2),
                "achieved_fraction": round(jps / bound, 3) if bound else None,
            }


def add_audit(audit_log: Path, phases: list[Phase], ceiling: float, replicas: int) -> None:
    """attach_audit for phases run in this process (their watch events still in memory)."""
    items = []
    for p in phases:
        assert p.tail is not None
        items.append((p.result, p.namespace, p.end_wall, analysis.pod_to_job(p.tail)))
    attach_audit(audit.files(str(audit_log)), items, ceiling, replicas)


def writes_per_job(audit_log: Path, phase: Phase, replicas: int) -> float:
    """W of one phase: the writes one job's life cost all clients together (0: none counted)."""
    assert phase.tail is not None
    scanned, _ = audit.scan(
        audit.files(str(audit_log)), {phase.namespace: phase.end_wall}, replicas
    )
    counted = audit.report(
        scanned[phase.namespace], phase.n, analysis.pod_to_job(phase.tail), "operator", replicas
    )
    return float(counted["writes_per_job_all_clients"])
