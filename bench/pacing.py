"""The paced regime's rate: about half what the control plane sustains,
0.5 x min(C / W, scheduler binds/s / R), from the status-patch ceiling C of the cluster
(bench/calibrate.py) and the writes per job W of the operator's burst phase just before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import costs
from calibrate import calibrate
from kubeclient import Client
from options import Settings
from phase import Phase
from progress import log
from workload import create_namespace, delete_namespace

SCHEDULER_DEFAULT_QPS = 50  # KubeSchedulerConfiguration default; binds cap at ~this many pods/s
DEFAULT_WRITES_PER_JOB = 30.0  # the reference's estimate, when no burst phase ran before


async def measure_ceiling(kubeconfig: str, settings: Settings) -> dict[str, Any]:
    """Calibration, in a namespace of its own with no operator running: C and how it was found."""
    ns = "bench-calibrate"
    async with Client(kubeconfig, "driver", pool=8) as client:
        await create_namespace(client, ns)
        log("calibrating the status-patch ceiling C")
        result = await calibrate(
            kubeconfig, ns, tuple(settings.calibration_levels), settings.calibration_seconds
        )
        await delete_namespace(client, ns, 120)
    log(
        f"C = {result['ceiling_writes_per_second']} status patches/s "
        f"(at concurrency {result['ceiling_concurrency']})"
    )
    return result


def choose_pace(
    ceiling: float, done: list[Phase], audit_log: Path, replicas: int
) -> tuple[float, dict[str, Any]]:
    """The pace in jobs/s, and what it was derived from (`pace_basis`)."""
    writes_per_job = DEFAULT_WRITES_PER_JOB
    burst = next((p for p in done if p.system == "operator"), None)
    if burst is not None:
        writes_per_job = costs.writes_per_job(audit_log, burst, replicas) or writes_per_job
    sustainable = min(ceiling / writes_per_job, SCHEDULER_DEFAULT_QPS / replicas)
    pace = round(max(0.5, 0.5 * sustainable), 2)
    log(
        f"pace: 0.5 x min(C {ceiling:.0f} / {writes_per_job:.1f} writes per job, "
        f"{SCHEDULER_DEFAULT_QPS} binds/s / R) = {pace} jobs/s"
    )
    basis = {
        "ceiling": ceiling,
        "writes_per_job": writes_per_job,
        "scheduler_binds_per_second": SCHEDULER_DEFAULT_QPS,
        "sustainable_jobs_per_second": round(sustainable, 2),
    }
    return pace, basis
