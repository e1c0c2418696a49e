"""The processes a phase starts beside the driver, and how they are stopped: the operator
(`python -m ucloud_operator`), bench/watcher.py, bench/stallprobe.py and py-spy.

Each is a subprocess, never a task of the driver's own event loop, so that its CPU is its own
and the driver's pauses do not show in its figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cluster import ROOT
from progress import log
from provenance import operator_source

BENCH = ROOT / "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
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
    """`python -m ucloud_operator -n <namespace>` as a subprocess, with its ports and the digest
    of the code it started from (`source`)."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path, extra: list[str]) -> None:
        self.source = operator_source()
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


async def start_watcher(
    stack: contextlib.ExitStack, kubeconfig: str, namespace: str, folder: Path, max_seconds: float
) -> subprocess.Popen[bytes]:
    """bench/watcher.py on the namespace, ready: its events go to <folder>/events.jsonl. It is
    stopped when `stack` closes."""
    ready = folder / "watcher.ready"
    watcher = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "watcher.py"),
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            namespace,
            "--out",
            str(folder / "events.jsonl"),
            "--ready",
            str(ready),
            "--max-seconds",
            str(max_seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "watcher.log").open("wb"),
    )
    stack.callback(stop_process, watcher)
    await wait_file(ready, watcher, 60)
    return watcher


async def start_operator(
    stack: contextlib.ExitStack,
    kubeconfig: str,
    namespace: str,
    folder: Path,
    *,
    extra: list[str],
    max_seconds: float,
) -> Operator:
    """The operator for the namespace, ready, with bench/stallprobe.py polling its /healthz into
    <folder>/stall.json; both are stopped when `stack` closes."""
    operator = Operator(kubeconfig, namespace, folder / "operator.log", extra)
    stack.callback(operator.stop)
    await operator.ready()
    probe = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "stallprobe.py"),
            "--url",
            operator.health_url,
            "--out",
            str(folder / "stall.json"),
            "--max-seconds",
            str(max_seconds),
        ]
    )
    stack.callback(stop_process, probe)
    return operator
