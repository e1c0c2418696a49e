"""ucloud-operator benchmark: UCloudJobs against the built-in Job controller, same control plane.

    .venv/bin/python bench/run.py                      # what `make bench` runs
    .venv/bin/python bench/run.py --scales 100         # what `make bench-quick` runs

For each scale N, and each kube-controller-manager configuration (`defaults`: its client limits
as shipped, `lifted`: --kube-api-qps/--kube-api-burst raised), a fresh kwokctl cluster with an
audit log is made; then:

1. calibration: the raw UCloudJob status-PATCH rate C of this API server (bench/calibrate.py);
2. for each system (the operator; batch/v1 Jobs with kube-controller-manager's Job controller)
   and each regime (burst: all N submitted at once; paced: a steady rate, about half what the
   control plane sustains), one phase in a namespace of its own: N jobs of R replicas driven
   IN_QUEUE -> RUNNING -> SUCCESS by KWOK stages (pods Running, then Succeeded after
   --run-seconds), timed by bench/watcher.py, counted by the audit log;
3. last, `--resident` UCloudJobs kept running to measure the operator's memory.

The results go to bench/results/<date>.json, latest.json, a PNG of the latency distributions
and a Markdown table; bench/README.md documents every key. Every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis
import audit
import cluster
import profile_summary
import report
from calibrate import calibrate
from kubeclient import BATCH, UCLOUDJOBS, ApiError, Client, core, group
from procstat import Tracked, loadavg

ROOT = cluster.ROOT
BENCH = ROOT / "bench"
SCHEDULER_DEFAULT_QPS = 50  # KubeSchedulerConfiguration default; binds cap at ~this many pods/s
MIN_WRITES_PER_STATE_CHANGE = 2  # one status patch and one Event


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- objects
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


def batch_job(name: str, replicas: int, run_seconds: float) -> dict[str, Any]:
    template = pod_template(run_seconds)
    template["spec"]["restartPolicy"] = "Never"
    return {
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


# ---------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def wait_file(path: Path, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear within {seconds} s")
        await asyncio.sleep(0.1)


async def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(*url.split("/")[2].split(":")), timeout
    )
    path = "/" + url.split("/", 3)[3]
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def diagnose_operators(folder: Path) -> Path:
    """Load bench/diag/sitecustomize.py into the operators started from now on, not into this
    process (its own pauses would mix with theirs): slow loop callbacks and collector pauses go
    to the operator's log, live objects by type to <folder>/types.txt on SIGUSR1. Returns the
    log's path."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = str(BENCH / "diag")
    os.environ.setdefault("UCLOUD_DIAG_SLOW", "0.1")
    os.environ.setdefault("UCLOUD_DIAG_GC", "1")
    os.environ.setdefault("UCLOUD_DIAG_TYPES", str(folder / "types.txt"))
    return folder / "operator.log"


def start_profiler(pid: int, folder: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the operator (bench extra); None if py-spy is not installed."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        log("py-spy not found: no profile")
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(folder / "operator-profile.txt"),
        ],
        stdout=(folder / "py-spy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    """py-spy writes its output when interrupted."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


class Operator:
    """`python -m ucloud_operator -n <namespace>` as a subprocess, with its ports."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path, extra: list[str]) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "operator"), env.get("PYTHONPATH", "")) if p
        )
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ucloud_operator",
                "-n",
                namespace,
                "--metrics-address",
                f"127.0.0.1:{self.metrics_port}",
                "--health-address",
                f"127.0.0.1:{self.health_port}",
                *extra,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.command = " ".join(["python -m ucloud_operator -n", namespace, *extra])

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    async def ready(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"operator exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError, IndexError):
                code, _ = await http_get(f"http://127.0.0.1:{self.health_port}/readyz")
                if code == 200:
                    return
            await asyncio.sleep(0.2)
        raise SystemExit(f"operator not ready within {seconds} s")

    async def metrics(self) -> dict[str, float]:
        """The operator's own counters (ucloud_*), summed over labels where noted."""
        try:
            _, text = await http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", 10)
        except (TimeoutError, OSError):
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("ucloud_") or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                if "_bucket{" in name_labels:
                    continue
                out[name_labels] = float(value)
        return out

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


# ---------------------------------------------------------------- phases
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
            else batch_job(name, replicas, run_seconds)
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


class Phase:
    def __init__(  # noqa: PLR0917
        self,
        bench: Bench,
        name: str,
        namespace: str,
        system: str,
        regime: str,
        n: int,
        pace: float | None,
    ) -> None:
        self.bench, self.name, self.namespace = bench, name, namespace
        self.system, self.regime, self.n, self.pace = system, regime, n, pace
        self.dir = bench.artifacts / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        self.end_wall = 0.0
        self.result: dict[str, Any] = {}
        self.tail: analysis.Tail | None = None

    async def run(self) -> dict[str, Any]:  # noqa: PLR0915
        b = self.bench
        args = b.args
        replicas = args.replicas
        log(
            f"phase {self.namespace}: {self.n} x {replicas}, {self.regime}"
            + (f" at {self.pace:.2f}/s" if self.pace else "")
        )
        async with Client(b.kubeconfig, "driver", pool=80, timeout=60) as client:
            await create_namespace(client, self.namespace)
            events = self.dir / "events.jsonl"
            ready = self.dir / "watcher.ready"
            watcher = subprocess.Popen(
                [
                    sys.executable,
                    str(BENCH / "watcher.py"),
                    "--kubeconfig",
                    b.kubeconfig,
                    "--namespace",
                    self.namespace,
                    "--out",
                    str(events),
                    "--ready",
                    str(ready),
                    "--max-seconds",
                    str(self.timeout() + 600),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(self.dir / "watcher.log").open("wb"),
            )
            operator: Operator | None = None
            probe: subprocess.Popen[bytes] | None = None
            profiler: subprocess.Popen[bytes] | None = None
            try:
                await wait_file(ready, watcher, 60)
                if self.system == "operator":
                    source = operator_source()
                    operator = Operator(
                        b.kubeconfig, self.namespace, self.dir / "operator.log", args.operator_args
                    )
                    await operator.ready()
                    probe = subprocess.Popen(
                        [
                            sys.executable,
                            str(BENCH / "stallprobe.py"),
                            "--url",
                            operator.health_url,
                            "--out",
                            str(self.dir / "stall.json"),
                            "--max-seconds",
                            str(self.timeout() + 600),
                        ]
                    )
                idle: dict[str, float] = {}
                if operator is not None:
                    # The operator's CPU while nothing happens (its probes included).
                    idle_probe = Tracked(operator.proc.pid)
                    idle_probe.start()
                    await asyncio.sleep(args.idle_seconds)
                    idle = idle_probe.stop()
                    idle["seconds"] = args.idle_seconds
                tracked = {"watcher": Tracked(watcher.pid)}
                if operator is not None:
                    tracked["operator"] = Tracked(operator.proc.pid)
                    if args.profile_operator:
                        profiler = start_profiler(operator.proc.pid, self.dir)
                started = time.monotonic()
                for component, pid in cluster.component_pids(b.cluster_name).items():
                    tracked[component] = Tracked(pid)
                for t in tracked.values():
                    t.start()
                load_start = loadavg()
                await client.warm(64)
                self.tail = analysis.Tail(str(events), self.system, replicas)
                submit_task = asyncio.create_task(
                    submit(
                        client,
                        self.namespace,
                        self.system,
                        self.n,
                        replicas,
                        args.run_seconds,
                        self.pace if self.regime == "paced" else None,
                    )
                )
                timed_out = await self.wait_final(submit_task, tracked)
                submitted = await submit_task
                # Writes that follow the final state (leftover replicas deleted, the Job's
                # "Completed" Event) still belong to the last jobs' lives.
                await asyncio.sleep(args.settle_seconds)
                self.end_wall = time.time()
                load_end = loadavg()
                metrics = await operator.metrics() if operator is not None else {}
                processes = {k: t.stop() for k, t in tracked.items()}
                elapsed = time.monotonic() - started
                if operator is not None and idle:
                    rate = idle["cpu_seconds"] / idle["seconds"]
                    net = max(0.0, processes["operator"]["cpu_seconds"] - rate * elapsed)
                    processes["operator"]["idle_cpu_seconds_per_second"] = round(rate, 4)
                    processes["operator"]["cpu_ms_per_job_net_of_idle"] = round(
                        1000 * net / self.n, 2
                    )

            finally:
                stop_profiler(profiler)
                stop_process(probe)
                if operator is not None:
                    operator.stop()
                stop_process(watcher)
            self.tail.poll()
            result = analysis.analyse(self.tail, self.n, args.run_seconds)
            for v in processes.values():
                v["cpu_ms_per_job"] = round(1000 * v["cpu_seconds"] / self.n, 2)
            stall: dict[str, Any] = {}
            if (self.dir / "stall.json").exists():
                stall = json.loads((self.dir / "stall.json").read_text())
            loop_metrics = {k: v for k, v in metrics.items() if "loop" in k or "lag" in k}
            if loop_metrics:
                stall["operator_metrics"] = loop_metrics
            self.result = {
                "system": "operator" if self.system == "operator" else "job-controller",
                "regime": self.regime,
                "n": self.n,
                "replicas": replicas,
                "namespace": self.namespace,
                "timed_out": timed_out,
                "timeout_seconds": self.timeout(),
                "submitted": submitted,
                **result,
                "processes": processes,
                "measured_seconds": round(elapsed, 2),
                "end_unix": round(self.end_wall, 3),
                "loadavg_start": load_start,
                "loadavg_end": load_end,
            }
            if operator is not None:
                self.result["operator"] = {
                    "command": operator.command,
                    "metrics": metrics,
                    "event_loop_stall": stall,
                    "source": source,
                }
                if (self.dir / "operator-profile.txt").exists():
                    self.result["operator"]["profile"] = {
                        "method": "py-spy record --pid <operator> --rate 100 --nonblocking "
                        "--format raw, over the timed part of the phase (adds its own CPU "
                        "outside the operator; CPU figures of a profiled run are not comparable)",
                        "file": str((self.dir / "operator-profile.txt").relative_to(ROOT)),
                        **profile_summary.summarise(str(self.dir / "operator-profile.txt")),
                    }
            await delete_namespace(client, self.namespace)
        lat = self.result["latency_seconds"]
        log(
            f"phase {self.namespace}: finished {result['finished']}/{self.n}, RUNNING p50 "
            f"{lat['running']['p50']} p99 {lat['running']['p99']}, completion p50 "
            f"{lat['completion']['p50']} p99 {lat['completion']['p99']}, "
            f"{result['throughput']['jobs_per_second']} jobs/s"
        )
        return self.result

    def timeout(self) -> float:
        if self.bench.args.phase_timeout:
            return self.bench.args.phase_timeout
        submit = self.n / self.pace if (self.regime == "paced" and self.pace) else 0
        # Generous: the Job controller with default client limits needs ~1 s per job.
        return 300 + self.bench.args.run_seconds + submit + 1.2 * self.n

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


class Bench:
    def __init__(self, args: Settings) -> None:
        self.args = args
        self.started = datetime.now(UTC)
        self.stamp = self.started.strftime("%Y-%m-%dT%H%M%SZ")
        self.artifacts = Path(args.artifacts) / self.stamp
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = ""
        self.cluster_name = ""
        self.results: dict[str, Any] = {}

    async def scale(self, out: dict[str, Any]) -> None:
        """Both configurations at scale out["n"], written into `out` as each phase ends (an
        interrupted run keeps the phases it finished). The pace the first calibrates serves both."""
        args = self.args
        n = out["n"]
        pace: float | None = args.pace
        for config in args.configs:
            extra: dict[str, list[str]] = {}
            if config == "lifted":
                extra["kube-controller-manager"] = args.lifted_kcm_flags
                if args.lifted_scheduler_flags:
                    extra["kube-scheduler"] = args.lifted_scheduler_flags
            self.cluster_name = f"{args.cluster_prefix}-{config}"
            audit_log = self.artifacts / f"audit-{n}-{config}.log"
            log(f"cluster {self.cluster_name} ({config}): starting")
            try:
                self.kubeconfig = cluster.up(
                    self.cluster_name, audit_log, extra, self.artifacts / "cluster.log"
                )
            except (SystemExit, Exception) as error:  # keep the configurations already measured
                log(f"cluster {self.cluster_name} did not start ({error}); {config} skipped")
                out["configs"][config] = {"error": f"cluster did not start: {error}"}
                continue
            try:
                await cluster.prepare(self.kubeconfig, args.nodes, args.node_pods)
                entry: dict[str, Any] = {
                    "cluster": self.cluster_name,
                    "flags_requested": extra,
                    "component_flags": cluster.component_cmdlines(self.cluster_name),
                    "nodes": {"count": args.nodes, "pods_each": args.node_pods},
                }
                out["configs"][config] = entry
                entry["calibration"] = await self.calibrate()
                pace = await self.phases(entry, n, config, audit_log, pace)
                if config == args.configs[0] and args.resident and n == args.scales[-1]:
                    entry["resident"] = await self.resident()
            finally:
                if not args.keep_cluster:
                    cluster.down(self.cluster_name, self.artifacts / "cluster.log")
                if not args.keep_audit:
                    for path in audit.files(str(audit_log)):
                        with contextlib.suppress(OSError):
                            os.unlink(path)

    async def phases(
        self, entry: dict[str, Any], n: int, config: str, audit_log: Path, pace: float | None
    ) -> float | None:
        """Every phase of one configuration, each kept in `entry` as it ends; the pace used."""
        args = self.args
        ceiling = entry["calibration"]["ceiling_writes_per_second"]
        phases: dict[str, Any] = {}
        entry["phases"] = phases
        objects: list[Phase] = []
        try:
            for system in args.systems:
                for regime in args.regimes:
                    if regime == "paced" and pace is None:
                        pace = self.choose_pace(ceiling, objects, audit_log)
                    kind = "op" if system == "operator" else "job"
                    phase = Phase(
                        self,
                        f"{system}/{regime}",
                        f"b{n}-{config[:3]}-{kind}-{regime}",
                        system,
                        regime,
                        n,
                        pace if regime == "paced" else None,
                    )
                    phases[f"{system}/{regime}"] = await phase.run()
                    objects.append(phase)
        except asyncio.CancelledError:
            entry["interrupted"] = f"during phase {len(objects) + 1}; later phases not run"
            raise
        finally:
            entry["pace_jobs_per_second"] = pace
            entry["pace_basis"] = getattr(self, "pace_basis", None)
            if objects:  # the audit log goes with the cluster
                self.add_audit(audit_log, objects, ceiling)
        return pace

    async def calibrate(self) -> dict[str, Any]:
        ns = "bench-calibrate"
        async with Client(self.kubeconfig, "driver", pool=8) as client:
            await create_namespace(client, ns)
            log("calibrating the status-patch ceiling C")
            result = await calibrate(
                self.kubeconfig,
                ns,
                tuple(self.args.calibration_levels),
                self.args.calibration_seconds,
            )
            await delete_namespace(client, ns, 120)
        log(
            f"C = {result['ceiling_writes_per_second']} status patches/s "
            f"(at concurrency {result['ceiling_concurrency']})"
        )
        return result

    def choose_pace(self, ceiling: float, done: list[Phase], audit_log: Path) -> float:
        """About half the sustainable job rate: min(C / writes per job, scheduler binds / R)."""
        writes_per_job = 30.0  # the reference's estimate, when no burst phase ran before
        burst = next((p for p in done if p.system == "operator"), None)
        if burst is not None and burst.tail is not None:
            scanned, _ = audit.scan(
                audit.files(str(audit_log)),
                {burst.namespace: burst.end_wall},
                self.args.replicas,
            )
            counted = audit.report(
                scanned[burst.namespace],
                burst.n,
                analysis.pod_to_job(burst.tail),
                "operator",
                self.args.replicas,
            )
            writes_per_job = counted["writes_per_job_all_clients"] or writes_per_job
        sustainable = min(ceiling / writes_per_job, SCHEDULER_DEFAULT_QPS / self.args.replicas)
        pace = round(max(0.5, 0.5 * sustainable), 2)
        log(
            f"pace: 0.5 x min(C {ceiling:.0f} / {writes_per_job:.1f} writes per job, "
            f"{SCHEDULER_DEFAULT_QPS} binds/s / R) = {pace} jobs/s"
        )
        self.pace_basis = {
            "ceiling": ceiling,
            "writes_per_job": writes_per_job,
            "scheduler_binds_per_second": SCHEDULER_DEFAULT_QPS,
            "sustainable_jobs_per_second": round(sustainable, 2),
        }
        return pace

    def add_audit(self, audit_log: Path, phases: list[Phase], ceiling: float) -> None:
        if not phases:
            return
        items = []
        for p in phases:
            assert p.tail is not None
            items.append((p.result, p.namespace, p.end_wall, analysis.pod_to_job(p.tail)))
        attach_audit(audit.files(str(audit_log)), items, ceiling, self.args.replicas)

    async def resident(self) -> dict[str, Any]:  # noqa: PLR0915
        """--resident UCloudJobs that stay RUNNING: the operator's memory at that size."""
        args = self.args
        n, ns = args.resident, "bench-resident"
        pending = args.resident_pods == "pending"
        wanted = "IN_QUEUE" if pending else "RUNNING"  # every replica pod created and observed
        log(f"resident: {n} UCloudJobs x {args.replicas} replicas, pods {args.resident_pods}")
        out: dict[str, Any] = {
            "jobs": n,
            "replicas": args.replicas,
            "namespace": ns,
            "pods": args.resident_pods,
            "resident_state": wanted,
        }
        workdir = self.artifacts / ns
        workdir.mkdir(parents=True, exist_ok=True)
        async with Client(self.kubeconfig, "driver", pool=80, timeout=60) as client:
            await create_namespace(client, ns)
            events = workdir / "events.jsonl"
            ready = workdir / "watcher.ready"
            watcher = subprocess.Popen(
                [
                    sys.executable,
                    str(BENCH / "watcher.py"),
                    "--kubeconfig",
                    self.kubeconfig,
                    "--namespace",
                    ns,
                    "--out",
                    str(events),
                    "--ready",
                    str(ready),
                    "--max-seconds",
                    str(args.resident_timeout + 600),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(workdir / "watcher.log").open("wb"),
            )
            operator: Operator | None = None
            probe: subprocess.Popen[bytes] | None = None
            try:
                await wait_file(ready, watcher, 60)
                out["operator_source"] = operator_source()
                operator = Operator(
                    self.kubeconfig, ns, workdir / "operator.log", args.operator_args
                )
                await operator.ready()
                probe = subprocess.Popen(
                    [
                        sys.executable,
                        str(BENCH / "stallprobe.py"),
                        "--url",
                        operator.health_url,
                        "--out",
                        str(workdir / "stall.json"),
                        "--max-seconds",
                        str(args.resident_timeout + 600),
                    ]
                )
                tracked = Tracked(operator.proc.pid)
                tracked.start()
                tail = analysis.Tail(str(events), "operator", args.replicas)
                nodes = cluster.node_names(args.nodes)
                submit_task = asyncio.create_task(
                    submit(
                        client,
                        ns,
                        "operator",
                        n,
                        args.replicas,
                        0,
                        None,
                        prefix="r",
                        node_names=nodes,
                        stay_pending=pending,
                    )
                )
                growth: list[dict[str, Any]] = []
                deadline = time.monotonic() + args.resident_timeout
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
                await asyncio.sleep(min(30, args.resident_settle))
                tracked.sample()
                out["operator"] = {**tracked.stop(), "metrics": await operator.metrics()}
                out["growth"] = growth[:: max(1, len(growth) // 60)]
            finally:
                stop_process(probe)
                if operator is not None:
                    operator.stop()
                stop_process(watcher)
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


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        mem = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": loadavg(),
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
            m = re.match(r"^([A-Z_]+)=(\S+)", line)
            if m:
                out[m.group(1).lower()] = m.group(2)
    with contextlib.suppress(Exception):
        import importlib.metadata as md  # noqa: PLC0415

        for pkg in ("kopf", "kubernetes", "aiohttp", "pydantic"):
            out[pkg] = md.version(pkg)
    return out


def operator_source() -> dict[str, Any]:
    """Which operator code a phase ran: the tree under operator/ is edited while benchmarks run,
    so each phase records a digest of its sources, and whether they differ from HEAD."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "operator").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "operator"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    return {
        "sha256": digest.hexdigest()[:16],
        "uncommitted": sorted(line[3:] for line in dirty if line.strip()),
    }


def git_info() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        return subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": run("git", "rev-parse", "HEAD"),
        "operator_dirty": bool(run("git", "status", "--porcelain", "--", "operator")),
    }


class Settings(argparse.Namespace):
    """The options of parse_args, typed (argparse's own Namespace has no attribute types)."""

    scales: list[int]
    replicas: int
    systems: list[str]
    regimes: list[str]
    configs: list[str]
    lifted_kcm_flags: list[str]
    lifted_scheduler_flags: list[str]
    pace: float | None
    run_seconds: float
    resident: int
    resident_pods: str
    resident_timeout: float
    resident_settle: float
    nodes: int
    node_pods: int
    calibration_levels: list[int]
    calibration_seconds: float
    settle_seconds: float
    idle_seconds: float
    phase_timeout: float | None
    operator_args: list[str]
    max_load: float
    load_wait: float
    profile_operator: bool
    cluster_prefix: str
    keep_cluster: bool
    keep_audit: bool
    artifacts: str
    out: str
    label: str


def parse_args(argv: list[str] | None = None) -> Settings:
    def ints(text: str) -> list[int]:
        return [int(x.replace("_", "")) for x in text.split(",") if x]

    def words(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--scales", type=ints, default=[100, 1000, 5000], help="values of N")
    p.add_argument("--replicas", type=int, default=4, help="R: replicas (pods) per job")
    p.add_argument(
        "--systems",
        type=words,
        default=["operator", "jobs"],
        help="operator (UCloudJobs), jobs (batch/v1 Jobs, kcm's Job controller)",
    )
    p.add_argument(
        "--regimes",
        type=words,
        default=["burst", "paced"],
        help="burst: all N at once; paced: a steady rate (see --pace)",
    )
    p.add_argument(
        "--configs",
        type=words,
        default=["defaults", "lifted"],
        help="kube-controller-manager client limits: defaults, lifted",
    )
    p.add_argument(
        "--lifted-kcm-flags",
        type=words,
        default=["kube-api-qps=5000", "kube-api-burst=10000"],
        help="kcm flags (key=value) of the lifted configuration",
    )
    p.add_argument(
        "--lifted-scheduler-flags",
        type=words,
        default=[],
        help="kube-scheduler flags of the lifted configuration (none: its defaults)",
    )
    p.add_argument(
        "--pace",
        type=float,
        default=None,
        help="paced arrival rate, jobs/s; default: 0.5 x the sustainable rate "
        "min(C / writes per job, 50 binds/s / R), W measured in the burst phase",
    )
    p.add_argument(
        "--run-seconds",
        type=float,
        default=30,
        help="replica run time (KWOK exit-after): Running -> Succeeded",
    )
    p.add_argument(
        "--resident",
        type=int,
        default=10000,
        help="UCloudJobs kept Running for the memory figure (0: skip); run once, "
        "after the largest scale, in the first configuration",
    )
    p.add_argument(
        "--resident-pods",
        choices=("pending", "running"),
        default="pending",
        help="resident replica pods left Pending by KWOK (the operator's index holds them just "
        "the same) or made Running (40,000 status writes more: about an hour on 2 cores)",
    )
    p.add_argument("--resident-timeout", type=float, default=1800)
    p.add_argument("--resident-settle", type=float, default=20)
    p.add_argument("--nodes", type=int, default=20, help="extra KWOK nodes")
    p.add_argument("--node-pods", type=int, default=2500, help="pods capacity of each node")
    p.add_argument("--calibration-levels", type=ints, default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--calibration-seconds", type=float, default=3)
    p.add_argument(
        "--settle-seconds",
        type=float,
        default=3,
        help="wait after the last job is final before the phase ends (audit window)",
    )
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=3,
        help="the operator's idle CPU is sampled this long before each phase",
    )
    p.add_argument(
        "--phase-timeout",
        type=float,
        default=None,
        help="seconds per phase; default 300 + run time + submission + 1.2 s x N",
    )
    p.add_argument(
        "--operator-args",
        type=lambda s: s.split(),
        default=[],
        help="extra operator flags, space-separated",
    )
    p.add_argument(
        "--max-load",
        type=float,
        default=1.5,
        help="scales N >= 1000 wait (up to --load-wait s) for the 1-min load below this",
    )
    p.add_argument("--load-wait", type=float, default=600)
    p.add_argument(
        "--profile-operator",
        action="store_true",
        help="sample the operator with py-spy in every operator phase (perturbs CPU)",
    )
    p.add_argument("--cluster-prefix", default="bench")
    p.add_argument("--keep-cluster", action="store_true")
    p.add_argument("--keep-audit", action="store_true", help="keep the (large) audit logs")
    p.add_argument(
        "--artifacts",
        default=str(ROOT / "artifacts" / "bench"),
        help="logs, watch events, audit logs",
    )
    p.add_argument("--out", default=str(BENCH / "results"))
    p.add_argument("--label", default="", help="a free-text note stored with the results")
    args = p.parse_args(argv, Settings())
    if not args.cluster_prefix.startswith("bench"):
        p.error("--cluster-prefix must start with 'bench'")
    return args


async def wait_for_load(limit: float, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while loadavg()[0] >= limit:
        if time.monotonic() > deadline:
            return False
        log(f"load {loadavg()[0]:.2f} >= {limit}: waiting")
        await asyncio.sleep(15)
    return True


async def main_async(args: Settings) -> int:
    if not shutil.which("bash"):
        raise SystemExit("bash is needed (hack/cluster.sh)")
    bench = Bench(args)
    out: dict[str, Any] = {
        "schema": 1,
        "date": bench.started.isoformat(timespec="seconds"),
        "label": args.label,
        "machine": machine(),
        "versions": versions(),
        "git": git_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("artifacts", "out")},
        "timing": analysis.__doc__.strip(),
        "scales": [],
        "skipped": [],
    }
    try:
        for n in args.scales:
            if n >= 1000 and not await wait_for_load(args.max_load, args.load_wait):
                log(f"N = {n}: load stayed >= {args.max_load}; skipped")
                out["skipped"].append(
                    {"n": n, "reason": f"1-min load >= {args.max_load}", "loadavg": loadavg()}
                )
                continue
            result: dict[str, Any] = {"n": n, "replicas": args.replicas, "configs": {}}
            out["scales"].append(result)  # filled as its phases end
            await bench.scale(result)
            for cfg in result["configs"].values():
                if "resident" in cfg:
                    out["resident"] = cfg.pop("resident")
            write_results(out, Path(args.out), bench.stamp, partial=True)
    finally:
        out["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        out["machine"]["loadavg_end"] = loadavg()
        paths = write_results(out, Path(args.out), bench.stamp, partial=False)
        log("wrote " + ", ".join(str(p) for p in paths))
    return 0


def write_results(out: dict[str, Any], folder: Path, stamp: str, partial: bool) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    dated = folder / f"{stamp}.json"
    tmp = folder / f"{stamp}.json.tmp"
    tmp.write_text(json.dumps(out, indent=1, default=str) + "\n")
    tmp.replace(dated)
    if partial or not (out["scales"] or out.get("resident")):
        return [dated]  # latest.* only ever point at a run that measured something
    latest = folder / "latest.json"
    shutil.copyfile(dated, latest)
    paths = [dated, latest]
    if out["scales"]:
        png = report.plot(out, folder / f"{stamp}.png")
        shutil.copyfile(png, folder / "latest.png")
        md = folder / f"{stamp}.md"
        md.write_text(report.table(out))
        shutil.copyfile(md, folder / "latest.md")
        paths += [png, md]
    return paths


async def guarded(args: Settings) -> int:
    """SIGTERM/SIGINT cancel the run: its `finally` blocks stop the subprocesses, delete the
    cluster and write what was measured so far."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await main_async(args)
    except asyncio.CancelledError:
        log("interrupted")
        return 130


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(guarded(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
