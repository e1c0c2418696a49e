"""What a phase submits and where: UCloudJobs or batch/v1 Jobs with the same pod template, in a
namespace of their own that is removed in bulk afterwards.

The pods' annotations drive KWOK's stages (hack/kwok-stages.yaml): Running once bound, then
Succeeded after the run time; or left Pending, for the resident jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from kubeclient import BATCH, UCLOUDJOBS, ApiError, Client, core, group
from progress import log


def pod_annotations(run_seconds: float, stay_pending: bool = False) -> dict[str, str]:
    if stay_pending:  # resident, pending: KWOK leaves the pod alone (hack/kwok-stages.yaml)
        return {"ucloud.dk/test-stay-pending": "true"}
    if run_seconds <= 0:  # resident: stays Running
        return {}
    return {"ucloud.dk/test-exit-code": "0", "ucloud.dk/test-exit-after": f"{run_seconds:g}s"}


def pod_template(
    run_seconds: float, node_name: str | None = None, stay_pending: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "bench"}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"annotations": pod_annotations(run_seconds, stay_pending)}, "spec": spec}


def ucloudjob(
    name: str,
    replicas: int,
    run_seconds: float,
    node_name: str | None = None,
    stay_pending: bool = False,
) -> dict[str, Any]:
    template = pod_template(run_seconds, node_name, stay_pending)
    return {
        "apiVersion": "ucloud.dk/v1",
        "kind": "UCloudJob",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "template": template},
    }


def batch_job(
    name: str, replicas: int, run_seconds: float, scheduling: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An Indexed Job with completions == parallelism: with the Workload API and the
    WorkloadWithJob gate on, a gang candidate of the Job controller (on 1.37 only with
    `scheduling`, e.g. {"schedulingPolicy": {"gang": {}}}: minCount defaults to parallelism)."""
    template = pod_template(run_seconds)
    template["spec"]["restartPolicy"] = "Never"
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "parallelism": replicas,
            "completions": replicas,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": template,
        },
    }
    if scheduling is not None:
        job["spec"]["scheduling"] = scheduling
    return job


async def create_namespace(client: Client, namespace: str) -> None:
    await client.request(
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"ucloud.dk/bench": "1"}},
        },
        ok=(201,),
    )
    deadline = time.monotonic() + 60
    while True:  # pods are refused until the namespace's default ServiceAccount exists
        with contextlib.suppress(ApiError):
            await client.request("GET", core(namespace, "serviceaccounts", "default"))
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"no default ServiceAccount in {namespace} after 60 s")
        await asyncio.sleep(0.2)


async def delete_namespace(client: Client, namespace: str, seconds: float = 300) -> bool:
    """Remove the phase's objects fast (bulk deletes, pods without grace), then the namespace."""
    background = {"propagationPolicy": "Background"}
    with contextlib.suppress(ApiError, OSError, TimeoutError):
        await client.request("DELETE", group(BATCH, namespace, "jobs"), params=background)
    with contextlib.suppress(ApiError, OSError, TimeoutError):
        await client.request(
            "DELETE", group(UCLOUDJOBS, namespace, "ucloudjobs"), params=background
        )
    with contextlib.suppress(ApiError, OSError, TimeoutError):
        await client.request("DELETE", core(namespace, "pods"), params={"gracePeriodSeconds": "0"})
    with contextlib.suppress(ApiError, OSError, TimeoutError):
        await client.request("DELETE", f"/api/v1/namespaces/{namespace}", ok=(200, 202, 404))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await client.request("GET", f"/api/v1/namespaces/{namespace}")
        except ApiError as error:
            if error.status == 404:
                return True
        except (OSError, TimeoutError):
            pass  # an API server busy deleting thousands of pods
        await asyncio.sleep(1)
    log(f"namespace {namespace} still terminating after {seconds:.0f} s; going on")
    return False


async def submit(  # noqa: PLR0917
    client: Client,
    namespace: str,
    system: str,
    n: int,
    replicas: int,
    run_seconds: float,
    pace: float | None,
    prefix: str = "j",
    node_names: list[str] | None = None,
    concurrency: int = 64,
    stay_pending: bool = False,
    job_scheduling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create n jobs: all at once (pace None; `concurrency` requests in flight) or at `pace`/s."""
    if system == "operator":
        path = group(UCLOUDJOBS, namespace, "ucloudjobs")
    else:
        path = group(BATCH, namespace, "jobs")
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i: int) -> None:
        name = f"{prefix}-{i:05d}"
        node_name = node_names[i % len(node_names)] if node_names else None
        body = (
            ucloudjob(name, replicas, run_seconds, node_name, stay_pending)
            if system == "operator"
            else batch_job(name, replicas, run_seconds, job_scheduling)
        )
        async with sem:
            for attempt in range(5):
                try:
                    await client.request("POST", path, body, ok=(201, 409))
                    return
                except (TimeoutError, ApiError, OSError) as error:
                    if attempt == 4:
                        errors.append(str(error)[:200])
                    await asyncio.sleep(0.2 * (attempt + 1))

    start = time.monotonic()
    if pace is None:
        await asyncio.gather(*(one(i) for i in range(n)))
    else:
        tasks = []
        for i in range(n):
            delay = start + i / pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    return {
        "jobs": n,
        "seconds": round(elapsed, 3),
        "rate_per_second": round(n / elapsed, 2) if elapsed > 0 else None,
        "target_rate_per_second": pace,
        "errors": len(errors),
        "error_samples": errors[:5],
    }
