"""What cluster tests use: the operator as a real process, and a namespace to act in.

The cluster comes from `hack/cluster.sh up` (kwokctl, binary runtime, KWOK fake nodes), or from
UCLOUD_TEST_KUBECONFIG when set. KWOK plays the kubelet, driven by annotations on the pod
template (hack/kwok-stages.yaml); where no stage fits, a test writes the pod status itself.
Every wait polls the API with a deadline; a timeout prints the job's status, its events and the
operator's log tail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "ucloud.dk", "v1", "ucloudjobs"
IMAGE_PULL_GRACE = 3  # seconds: the operator runs with a short grace so tests stay quick
NODE_LOST_GRACE = 3  # seconds, likewise
T = TypeVar("T")


def kubectl(binary: str, kubeconfig: str, *args: str, check: bool = True,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "--kubeconfig", kubeconfig, *args], check=check,
                          capture_output=True, text=True, input=input_text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OperatorProcess:
    """`python -m ucloud_operator` against the test cluster; restartable, killable."""

    def __init__(self, kubeconfig: str, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.health_url = f"http://127.0.0.1:{self.health_port}"

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.starts += 1
        log.write(f"\n===== operator start #{self.starts} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ucloud_operator", "--image-pull-grace",
             str(IMAGE_PULL_GRACE), "--node-lost-grace", str(NODE_LOST_GRACE),
             "--log-level", "DEBUG",
             # Off by default; the tiers were written with it on (test_ha runs a standby).
             "--leader-elect",
             "--metrics-address", f"127.0.0.1:{self.metrics_port}",
             "--health-address", f"127.0.0.1:{self.health_port}", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no operator log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """What a test does to the cluster, in its own namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str,
                 operator: OperatorProcess) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.operator = operator

    # --- jobs ---

    def create_job(self, name: str, replicas: int = 1, *, annotations: dict[str, str] | None = None,
                   deadline: int | None = None, pod_spec: dict[str, Any] | None = None) -> None:
        spec: dict[str, Any] = {
            "replicas": replicas,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": pod_spec or {"containers": [{"name": "main", "image": "busybox"}]},
            },
        }
        if deadline is not None:
            spec["activeDeadlineSeconds"] = deadline
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "UCloudJob",
                "metadata": {"name": name}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def job(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.job(name).get("status") or {}

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                   {"spec": spec})

    def delete_job(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    # --- pods ---

    def pods(self, job: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(  # type: ignore[no-any-return]
            self.namespace, label_selector=f"ucloud.dk/job-name={job}").items

    def patch_pod_status(self, name: str, status: dict[str, Any]) -> None:
        """Play the kubelet where no KWOK stage fits."""
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def events(self, name: str) -> list[client.CoreV1Event]:
        selector = f"involvedObject.kind=UCloudJob,involvedObject.name={name}"
        return self.core.list_namespaced_event(  # type: ignore[no-any-return]
            self.namespace, field_selector=selector).items

    # --- waiting ---

    def evidence(self, name: str) -> str:
        try:
            status = yaml.safe_dump(self.status(name), sort_keys=False)
        except ApiException as error:
            status = f"(job not readable: {error.status})"
        try:
            events = "\n".join(f"  {e.type} {e.reason}: {e.message}" for e in self.events(name))
            pods = "\n".join(f"  {p.metadata.name}: {p.status.phase} {p.status.reason or ''}"
                             for p in self.pods(name))
        except ApiException as error:
            events = pods = f"(not readable: {error.status})"
        return (f"--- job {self.namespace}/{name} status ---\n{status}"
                f"--- events ---\n{events}\n--- pods ---\n{pods}\n"
                f"--- operator log tail ---\n{self.operator.log_tail()}")

    def wait_for(self, name: str, what: str, check: Callable[[], T | None],
                 timeout: float = 30.0) -> T:
        """Poll `check` until it returns a truthy value; on timeout fail with the evidence."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except ApiException as error:
                last_error = error
            time.sleep(delay)  # a poll interval, not a wait for an outcome
            delay = min(delay * 1.5, 0.5)
        pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last_error})\n"
                    f"{self.evidence(name)}", pytrace=False)

    def wait_for_state(self, name: str, state: str, reason: str | None = None,
                       timeout: float = 30.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            if status.get("state") == state and (reason is None or status.get("reason") == reason):
                return status
            return None
        return self.wait_for(name, f"state {state} reason {reason}", reached, timeout)

    def wait_for_event(self, name: str, reason: str, timeout: float = 30.0) -> client.CoreV1Event:
        """The job's Event of `reason`. The controller posts an Event after the status write it
        reports, so a test that has seen the status may be ahead of the Event."""
        def posted() -> client.CoreV1Event | None:
            return next((e for e in self.events(name) if e.reason == reason), None)
        return self.wait_for(name, f"event {reason}", posted, timeout)

    def wait_for_pods(self, name: str, count: int, phase: str | None = None,
                      timeout: float = 30.0) -> list[client.V1Pod]:
        def enough() -> list[client.V1Pod] | None:
            pods = [p for p in self.pods(name) if phase is None or p.status.phase == phase]
            return pods if len(pods) == count else None
        return self.wait_for(name, f"{count} pods {phase or ''}", enough, timeout)
