"""The benchmark's clock: three watches in one namespace, each event stamped on receipt.

    python bench/watcher.py --kubeconfig K --namespace NS --out events.jsonl [--ready FILE]

Runs as its own process on its own connections (user agent `ucloud-bench/watcher`), so its
CPU is measured apart from the driver's. One watch each on UCloudJobs, pods and batch/v1 Jobs
of the namespace. Every chunk read from a watch is stamped with `time.monotonic_ns()` before its
lines are parsed (CLOCK_MONOTONIC is system-wide, so the driver can compare stamps); only the
fields the latency figures need are kept, one JSON array per line:

    [t_ns, "p", type, pod, job, phase, deleting]          pods
    [t_ns, "u", type, ujob, state, runningReplicas]        UCloudJobs
    [t_ns, "j", type, job, ready, succeeded, complete, active]  batch/v1 Jobs

The first line is ["clock", monotonic_ns, time_ns] (to map stamps to wall-clock time); the last
is ["stats", {...}]. Stops on SIGTERM/SIGINT or after --max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kubeclient import BATCH, UCLOUDJOBS, ApiError, Client, core, group

JOB_LABELS = ("ucloud.dk/job-name", "batch.kubernetes.io/job-name", "job-name")
MAX_RESTARTS = 1000  # watch re-opens per resource (server timeouts, 410s); bounded


def pod_fields(obj: dict[str, Any]) -> list[Any]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    job = next((labels[k] for k in JOB_LABELS if k in labels), "")
    phase = (obj.get("status") or {}).get("phase", "")
    return [meta.get("name", ""), job, phase, bool(meta.get("deletionTimestamp"))]


def ujob_fields(obj: dict[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    return [obj["metadata"]["name"], status.get("state", ""), status.get("runningReplicas", 0)]


def job_fields(obj: dict[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    complete = any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return [
        obj["metadata"]["name"],
        status.get("ready", 0),
        status.get("succeeded", 0),
        complete,
        status.get("active", 0),
    ]


class Watcher:
    def __init__(self, client: Client, namespace: str, out: Any) -> None:
        self.client = client
        self.namespace = namespace
        self.out = out
        self.counts: dict[str, int] = {"p": 0, "u": 0, "j": 0}
        self.restarts: dict[str, int] = {"p": 0, "u": 0, "j": 0}
        self.errors: list[str] = []

    def emit(self, row: list[Any]) -> None:
        self.out.write(orjson.dumps(row) + b"\n")

    async def run(self, tag: str, path: str, fields: Any, ready: asyncio.Event) -> None:
        listing = await self.client.get_json(path)
        stamp = time.monotonic_ns()
        version = listing["metadata"]["resourceVersion"]
        for item in listing.get("items") or []:
            self.emit([stamp, tag, "LISTED", *fields(item)])
        ready.set()
        while self.restarts[tag] < MAX_RESTARTS:
            try:
                async for stamp, line in self.client.watch(path, {"resourceVersion": version}):
                    event = orjson.loads(line)
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # too old: relist
                            version = ""
                            break
                        self.errors.append(f"{tag}: {obj.get('message')}")
                        continue
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if kind == "BOOKMARK":
                        continue
                    self.counts[tag] += 1
                    self.emit([stamp, tag, kind, *fields(obj)])
            except (TimeoutError, ApiError, OSError) as error:
                self.errors.append(f"{tag}: {error}")
                await asyncio.sleep(0.2)
            self.restarts[tag] += 1
            if not version:
                listing = await self.client.get_json(path)
                stamp = time.monotonic_ns()
                version = listing["metadata"]["resourceVersion"]
                for item in listing.get("items") or []:
                    self.emit([stamp, tag, "LISTED", *fields(item)])


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", help="file created once all three watches are open")
    p.add_argument("--max-seconds", type=float, default=4 * 3600)
    args = p.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ns = args.namespace
    with open(args.out, "wb", buffering=1 << 20) as out:
        out.write(orjson.dumps(["clock", time.monotonic_ns(), time.time_ns()]) + b"\n")
        async with Client(args.kubeconfig, "watcher", pool=8, timeout=60) as client:
            watcher = Watcher(client, ns, out)
            readies = [asyncio.Event() for _ in range(3)]
            tasks = [
                asyncio.create_task(
                    watcher.run("u", group(UCLOUDJOBS, ns, "ucloudjobs"), ujob_fields, readies[0])
                ),
                asyncio.create_task(watcher.run("p", core(ns, "pods"), pod_fields, readies[1])),
                asyncio.create_task(
                    watcher.run("j", group(BATCH, ns, "jobs"), job_fields, readies[2])
                ),
            ]
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)

            async def flush() -> None:  # the driver tails the file to see progress
                while True:
                    await asyncio.sleep(0.25)
                    out.flush()

            tasks.append(asyncio.create_task(flush()))
            if args.ready:
                Path(args.ready).write_text("ready\n")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.max_seconds)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                    watcher.errors.append(repr(result))
        stats = {
            "events": watcher.counts,
            "restarts": watcher.restarts,
            "errors": watcher.errors[:20],
        }
        out.write(orjson.dumps(["stats", stats]) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
