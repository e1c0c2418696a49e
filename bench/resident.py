"""The memory figure: `--resident` UCloudJobs kept alive, the operator's RSS as they come up and
its peak after a quiet period.

The pods are pinned to the bench nodes by nodeName (the scheduler is bypassed: 40,000 bindings at
its 50/s would take 13 minutes) and, with `--resident-pods pending`, left Pending by KWOK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import analysis
import cluster
from kubeclient import Client
from phase import Target
from processes import start_operator, start_watcher
from procstat import Tracked
from progress import log
from workload import create_namespace, delete_namespace, submit

NAMESPACE = "bench-resident"


async def resident(target: Target) -> dict[str, Any]:
    """--resident UCloudJobs that stay RUNNING (or IN_QUEUE): the operator's memory at that size."""
    settings = target.settings
    n, ns = settings.resident, NAMESPACE
    pending = settings.resident_pods == "pending"
    wanted = "IN_QUEUE" if pending else "RUNNING"  # every replica pod created and observed
    log(f"resident: {n} UCloudJobs x {settings.replicas} replicas, pods {settings.resident_pods}")
    out: dict[str, Any] = {
        "jobs": n,
        "replicas": settings.replicas,
        "namespace": ns,
        "pods": settings.resident_pods,
        "resident_state": wanted,
    }
    workdir = target.artifacts / ns
    workdir.mkdir(parents=True, exist_ok=True)
    max_seconds = settings.resident_timeout + 600
    async with Client(target.kubeconfig, "driver", pool=80, timeout=60) as client:
        await create_namespace(client, ns)
        with contextlib.ExitStack() as stack:  # stops every process started, last first
            await start_watcher(stack, target.kubeconfig, ns, workdir, max_seconds)
            operator = await start_operator(
                stack,
                target.kubeconfig,
                ns,
                workdir,
                extra=settings.operator_args,
                max_seconds=max_seconds,
            )
            out["operator_source"] = operator.source
            tracked = Tracked(operator.proc.pid)
            tracked.start()
            tail = analysis.Tail(str(workdir / "events.jsonl"), "operator", settings.replicas)
            submit_task = asyncio.create_task(
                submit(
                    client,
                    ns,
                    "operator",
                    n,
                    settings.replicas,
                    0,
                    None,
                    prefix="r",
                    node_names=cluster.node_names(settings.nodes),
                    stay_pending=pending,
                )
            )
            growth: list[dict[str, Any]] = []
            deadline = time.monotonic() + settings.resident_timeout
            start = time.monotonic()
            running = 0
            while time.monotonic() < deadline:
                await asyncio.sleep(2)
                tail.poll()
                tracked.sample()
                running = sum(1 for t in tail.jobs.values() if t.last_state == wanted)
                growth.append(
                    {
                        "t": round(time.monotonic() - start, 1),
                        "jobs_seen": len(tail.jobs),
                        "running": running,
                        "rss_mib": round(tracked.peak_rss_kib / 1024, 1),
                    }
                )
                if running >= n and submit_task.done():
                    break
            out["submitted"] = await submit_task
            out["all_running"] = running >= n
            out["running"] = running
            # Steady state: a quiet period with everything resident.
            await asyncio.sleep(min(30, settings.resident_settle))
            tracked.sample()
            out["operator"] = {**tracked.stop(), "metrics": await operator.metrics()}
            out["growth"] = growth[:: max(1, len(growth) // 60)]
        if (workdir / "stall.json").exists():
            out["event_loop_stall"] = json.loads((workdir / "stall.json").read_text())
        out["method"] = (
            "pods pinned to the bench nodes by nodeName (the scheduler is bypassed: only "
            "memory is measured); "
            + (
                "annotated ucloud.dk/test-stay-pending, so KWOK leaves them Pending and "
                "the jobs stay IN_QUEUE with all replicas created and watched"
                if pending
                else "no exit annotation (replicas stay Running)"
            )
            + "; RSS from /proc/<pid>/status"
        )
        try:
            await delete_namespace(client, ns, 600)
        except Exception as error:  # the figures are taken; cleanup dies with the cluster
            log(f"resident cleanup failed: {error!r}")
    log(
        f"resident: {out.get('running')}/{n} {wanted}, operator peak RSS "
        f"{out.get('operator', {}).get('vm_hwm_mib')} MiB"
    )
    return out
