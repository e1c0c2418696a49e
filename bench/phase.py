"""One timed phase: N jobs of one system, in one regime, in a namespace of its own.

The system is `operator` (UCloudJobs; the operator started fresh for the phase, with the stall
probe beside it) or `jobs` (batch/v1 Jobs; kube-controller-manager's Job controller), the regime
`burst` (all N at once) or `paced` (a steady rate). bench/watcher.py times the jobs, /proc gives
every process's CPU and memory; the audit log's counts are added later (costs.py), since a
scan of the log serves all the phases of a cluster at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import analysis
import cluster
import profile_summary
from kubeclient import Client
from options import Settings
from processes import Operator, start_operator, start_profiler, start_watcher, stop_profiler
from procstat import Tracked, loadavg
from progress import log
from workload import create_namespace, delete_namespace, submit

PROFILE_METHOD = (
    "py-spy record --pid <operator> --rate 100 --nonblocking --format raw, over the timed part "
    "of the phase (adds its own CPU outside the operator; CPU figures of a profiled run are not "
    "comparable)"
)


@dataclass(frozen=True)
class Target:
    """The cluster the phases run on, and the folder their files go to."""

    settings: Settings
    cluster_name: str
    kubeconfig: str
    artifacts: Path
    # The Jobs' spec.scheduling (the Job controller's gang on Kubernetes >= 1.37), or None.
    job_scheduling: dict[str, Any] | None = None


class Phase:
    def __init__(
        self,
        target: Target,
        namespace: str,
        *,
        system: str,
        regime: str,
        n: int,
        pace: float | None,
    ) -> None:
        self.target, self.namespace = target, namespace
        self.system, self.regime, self.n, self.pace = system, regime, n, pace
        self.dir = target.artifacts / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        self.end_wall = 0.0
        self.result: dict[str, Any] = {}
        self.tail: analysis.Tail | None = None

    async def run(self) -> dict[str, Any]:
        settings = self.target.settings
        log(
            f"phase {self.namespace}: {self.n} x {settings.replicas}, {self.regime}"
            + (f" at {self.pace:.2f}/s" if self.pace else "")
        )
        async with Client(self.target.kubeconfig, "driver", pool=80, timeout=60) as client:
            await create_namespace(client, self.namespace)
            self.result = await self.measure(client)
            await delete_namespace(client, self.namespace)
        result, lat = self.result, self.result["latency_seconds"]
        log(
            f"phase {self.namespace}: finished {result['finished']}/{self.n}, RUNNING p50 "
            f"{lat['running']['p50']} p99 {lat['running']['p99']}, completion p50 "
            f"{lat['completion']['p50']} p99 {lat['completion']['p99']}, "
            f"{result['throughput']['jobs_per_second']} jobs/s"
        )
        return self.result

    async def measure(self, client: Client) -> dict[str, Any]:
        """Start the phase's processes, submit, wait until every job is final; the result."""
        settings = self.target.settings
        max_seconds = self.timeout() + 600
        with contextlib.ExitStack() as stack:  # stops every process started, last first
            watcher = await start_watcher(
                stack, self.target.kubeconfig, self.namespace, self.dir, max_seconds
            )
            operator: Operator | None = None
            idle: dict[str, float] = {}
            if self.system == "operator":
                operator = await start_operator(
                    stack,
                    self.target.kubeconfig,
                    self.namespace,
                    self.dir,
                    extra=settings.operator_args,
                    max_seconds=max_seconds,
                )
                # The operator's CPU while nothing happens (its probes included).
                idle_probe = Tracked(operator.proc.pid)
                idle_probe.start()
                await asyncio.sleep(settings.idle_seconds)
                idle = idle_probe.stop()
                idle["seconds"] = settings.idle_seconds
            tracked = {"watcher": Tracked(watcher.pid)}
            if operator is not None:
                tracked["operator"] = Tracked(operator.proc.pid)
                if settings.profile_operator:
                    stack.callback(stop_profiler, start_profiler(operator.proc.pid, self.dir))
            started = time.monotonic()
            for component, pid in cluster.component_pids(self.target.cluster_name).items():
                tracked[component] = Tracked(pid)
            for t in tracked.values():
                t.start()
            load_start = loadavg()
            await client.warm(64)
            self.tail = analysis.Tail(
                str(self.dir / "events.jsonl"), self.system, settings.replicas
            )
            submit_task = asyncio.create_task(
                submit(
                    client,
                    self.namespace,
                    self.system,
                    self.n,
                    settings.replicas,
                    settings.run_seconds,
                    self.pace if self.regime == "paced" else None,
                    job_scheduling=self.target.job_scheduling,
                )
            )
            timed_out = await self.wait_final(submit_task, tracked)
            submitted = await submit_task
            # Writes that follow the final state (leftover replicas deleted, the Job's
            # "Completed" Event) still belong to the last jobs' lives.
            await asyncio.sleep(settings.settle_seconds)
            self.end_wall = time.time()
            load_end = loadavg()
            metrics = await operator.metrics() if operator is not None else {}
            processes = {k: t.stop() for k, t in tracked.items()}
            elapsed = time.monotonic() - started
            if idle:
                rate = idle["cpu_seconds"] / idle["seconds"]
                net = max(0.0, processes["operator"]["cpu_seconds"] - rate * elapsed)
                processes["operator"]["idle_cpu_seconds_per_second"] = round(rate, 4)
                processes["operator"]["cpu_ms_per_job_net_of_idle"] = round(1000 * net / self.n, 2)
        self.tail.poll()
        for v in processes.values():
            v["cpu_ms_per_job"] = round(1000 * v["cpu_seconds"] / self.n, 2)
        result = {
            "system": "operator" if self.system == "operator" else "job-controller",
            "regime": self.regime,
            "n": self.n,
            "replicas": settings.replicas,
            "namespace": self.namespace,
            "timed_out": timed_out,
            "timeout_seconds": self.timeout(),
            "submitted": submitted,
            **analysis.analyse(self.tail, self.n, settings.run_seconds),
            "processes": processes,
            "measured_seconds": round(elapsed, 2),
            "end_unix": round(self.end_wall, 3),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
        }
        if operator is not None:
            result["operator"] = self.operator_result(operator, metrics)
        return result

    def operator_result(self, operator: Operator, metrics: dict[str, float]) -> dict[str, Any]:
        stall: dict[str, Any] = {}
        if (self.dir / "stall.json").exists():
            stall = json.loads((self.dir / "stall.json").read_text())
        loop_metrics = {k: v for k, v in metrics.items() if "loop" in k or "lag" in k}
        if loop_metrics:
            stall["operator_metrics"] = loop_metrics
        out: dict[str, Any] = {
            "command": operator.command,
            "metrics": metrics,
            "event_loop_stall": stall,
            "source": operator.source,
        }
        profile = self.dir / "operator-profile.txt"
        if profile.exists():
            out["profile"] = {
                "method": PROFILE_METHOD,
                "file": str(profile.relative_to(cluster.ROOT)),
                **profile_summary.summarise(str(profile)),
            }
        return out

    def timeout(self) -> float:
        if self.target.settings.phase_timeout:
            return self.target.settings.phase_timeout
        submit = self.n / self.pace if (self.regime == "paced" and self.pace) else 0
        # Generous: the Job controller with default client limits needs ~1 s per job.
        return 300 + self.target.settings.run_seconds + submit + 1.2 * self.n

    async def wait_final(self, submit_task: asyncio.Task[Any], tracked: dict[str, Tracked]) -> bool:
        """Until every job is final (per the watcher's file), or the phase times out."""
        assert self.tail is not None
        deadline = time.monotonic() + self.timeout()
        last_report = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            self.tail.poll()
            for t in tracked.values():
                t.sample()
            if submit_task.done() and (error := submit_task.exception()) is not None:
                raise error
            if self.tail.finished >= self.n:
                return False
            if time.monotonic() > deadline:
                log(f"phase {self.namespace}: timed out with {self.tail.finished}/{self.n} final")
                return True
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                log(f"  {self.namespace}: {self.tail.finished}/{self.n} final")
