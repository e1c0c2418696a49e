"""A quick resident-memory probe, lighter than `bench/run.py --resident` and built from its parts:
N UCloudJobs x 4 replicas whose pods stay Pending (pinned to bench nodes by nodeName), on a
running local cluster (UCLOUD_CLUSTER, default itest). It waits until the operator counts N jobs
IN_QUEUE, lets it settle, and prints its RSS (current and peak) and longest event-loop lag.

    .venv/bin/python bench/mem_probe.py 2000
    UCLOUD_PROBE_DIAG=/tmp/diag .venv/bin/python bench/mem_probe.py 2000

The second loads bench/diag/sitecustomize.py into the operator: slow event-loop callbacks and GC
pauses go to /tmp/diag/operator.log, live objects by type to /tmp/diag/types.txt (after the RSS
is read). UCLOUD_DIAG_TRACEMALLOC=<file> adds tracemalloc (slow) with a dump on SIGUSR2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster
from kubeclient import Client
from processes import Operator, diagnose_operators
from procstat import cpu_seconds, memory_kib
from workload import create_namespace, delete_namespace, submit

REPLICAS = 4
NODES = 20
TIMEOUT_SECONDS = 1800
SETTLE_SECONDS = 20


async def main(jobs: int) -> None:
    name = os.environ.get("UCLOUD_CLUSTER", "itest")
    kubeconfig = str(cluster.CACHE / f"kubeconfig-{name}")
    diag = os.environ.get("UCLOUD_PROBE_DIAG")
    log = diagnose_operators(Path(diag)) if diag else Path("/tmp/operator.log")
    await cluster.prepare(kubeconfig, NODES, jobs * REPLICAS // NODES + 10)
    namespace = f"mem-{int(time.time())}"
    async with Client(kubeconfig, "driver", pool=80, timeout=60) as client:
        await create_namespace(client, namespace)
        operator = Operator(kubeconfig, namespace, log, [])
        try:
            await operator.ready()
            pid = operator.proc.pid
            base = memory_kib(pid).get("VmRSS", 0) >> 10
            started = time.monotonic()
            submitted = await submit(
                client,
                namespace,
                "operator",
                jobs,
                REPLICAS,
                0,
                None,
                prefix="r",
                node_names=cluster.node_names(NODES),
                stay_pending=True,
            )
            queued, halfway = 0.0, False
            while queued < jobs and time.monotonic() - started < TIMEOUT_SECONDS:
                await asyncio.sleep(2)
                queued = (await operator.metrics()).get('ucloud_jobs{state="IN_QUEUE"}', 0.0)
                if diag and not halfway and queued >= jobs / 2:
                    halfway = True  # what is alive while the operator is busy
                    os.kill(pid, signal.SIGUSR1)
            reached = time.monotonic() - started
            await asyncio.sleep(SETTLE_SECONDS)
            memory = memory_kib(pid)
            metrics = await operator.metrics()
            if diag:
                os.kill(pid, signal.SIGUSR1)
                await asyncio.sleep(5)  # the dump runs in the operator
            print(
                f"N={jobs} R={REPLICAS} in_queue={queued:.0f} submitted in "
                f"{submitted['seconds']:.1f}s, all IN_QUEUE after {reached:.1f}s; "
                f"rss start {base} MiB, now {memory.get('VmRSS', 0) >> 10} MiB, "
                f"peak {memory.get('VmHWM', 0) >> 10} MiB; cpu {cpu_seconds(pid):.1f}s; "
                f"longest loop lag {metrics.get('ucloud_event_loop_lag_max_seconds', 0):.3f}s"
            )
        finally:
            operator.stop()
        await delete_namespace(client, namespace, 600)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
