"""A quick CPU-per-job probe, lighter than bench/run.py and built from its parts: N jobs x 4
replicas in a burst on a running local cluster (UCLOUD_CLUSTER, default itest), the operator as a
subprocess (processes.Operator), its CPU seconds read from /proc before and after, and the
requests and watch events per job from its /metrics.

    .venv/bin/python bench/cpu_probe.py 100
    UCLOUD_PROBE_PROFILE=/tmp/probe .venv/bin/python bench/cpu_probe.py 100
    UCLOUD_PROBE_DIAG=/tmp/diag .venv/bin/python bench/cpu_probe.py 1000

The second also samples the operator with py-spy into /tmp/probe/operator-profile.txt (raw).
The third loads bench/diag/sitecustomize.py into the operator (as bench/mem_probe.py does): slow
event-loop callbacks and collector pauses, with their CPU time, go to /tmp/diag/operator.log.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubeclient import UCLOUDJOBS, Client, group
from processes import Operator, diagnose_operators, start_profiler, stop_profiler
from procstat import cpu_seconds, memory_kib
from workload import create_namespace, delete_namespace, submit

REPLICAS = 4
RUN_SECONDS = 5  # replica run time (KWOK exit-after)
TIMEOUT_SECONDS = 300
COUNTED = (
    "ucloud_watch_events_total",
    "ucloud_api_requests_total",
    "ucloud_reconcile_seconds_count",
)
TIMED = ("ucloud_api_request_duration_seconds", "ucloud_reconcile_seconds", "ucloud_pod_event")


async def main(jobs: int) -> None:
    cluster = os.environ.get("UCLOUD_CLUSTER", "itest")
    kubeconfig = str(Path.home() / ".cache" / "ucloud-operator" / f"kubeconfig-{cluster}")
    namespace = f"cpu-{int(time.time())}"
    async with Client(kubeconfig, "driver") as client:
        await create_namespace(client, namespace)
        diag = os.environ.get("UCLOUD_PROBE_DIAG")
        log = diagnose_operators(Path(diag)) if diag else Path("/tmp/cpu_probe.log")
        operator = Operator(kubeconfig, namespace, log, [])
        profile = os.environ.get("UCLOUD_PROBE_PROFILE")
        spy = None
        try:
            await operator.ready()  # its start-up CPU is not the jobs' cost
            if profile:
                Path(profile).mkdir(parents=True, exist_ok=True)
                spy = start_profiler(operator.proc.pid, Path(profile))
            pid = operator.proc.pid
            before, started = cpu_seconds(pid) or 0.0, time.monotonic()
            await submit(client, namespace, "operator", jobs, REPLICAS, RUN_SECONDS, None)
            done = 0
            path = group(UCLOUDJOBS, namespace, "ucloudjobs")
            while done < jobs and time.monotonic() - started < TIMEOUT_SECONDS:
                items = (await client.get_json(path))["items"]
                done = sum((j.get("status") or {}).get("state") == "SUCCESS" for j in items)
                await asyncio.sleep(1)
            used = (cpu_seconds(pid) or 0.0) - before
            print(
                f"N={jobs} R={REPLICAS} done={done} wall={time.monotonic() - started:.1f}s "
                f"cpu={used:.2f}s cpu/job={used / jobs * 1000:.1f}ms "
                f"peak_rss={memory_kib(pid).get('VmHWM')} kB"
            )
            metrics = await operator.metrics()
            for name, value in metrics.items():
                if name.startswith(COUNTED):  # per job: what the CPU is spent on
                    print(f"  {name} {value / jobs:.2f}/job")
            stall = metrics.get("ucloud_event_loop_lag_max_seconds", 0.0)
            print(f"  longest event-loop stall {stall * 1000:.0f}ms")
            for name, total in metrics.items():  # mean durations: where a pass waits
                if name.startswith(TIMED) and "_sum" in name:
                    count = metrics.get(name.replace("_sum", "_count"), 0.0)
                    if count:
                        print(f"  {name.replace('_sum', '')} mean {total / count * 1000:.1f}ms")
        finally:
            stop_profiler(spy)
            operator.stop()
        await delete_namespace(client, namespace)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
