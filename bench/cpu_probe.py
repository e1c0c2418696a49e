"""A quick CPU-per-job probe, lighter than bench/run.py: N jobs x 4 replicas in a burst on a
running local cluster (UCLOUD_CLUSTER, default itest), the operator as a subprocess, its CPU
seconds read from /proc before and after.

    .venv/bin/python bench/cpu_probe.py 100
    UCLOUD_PROBE_PROFILE=/tmp/probe.txt .venv/bin/python bench/cpu_probe.py 100  # + py-spy (raw)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kubernetes import client, config

REPLICAS = 4
TIMEOUT_SECONDS = 300
METRICS_PORT = 18931
COUNTED = (
    "ucloud_watch_events_total",
    "ucloud_api_requests_total",
    "ucloud_reconcile_seconds_count",
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line for line in lines if line.startswith("VmHWM")).split(":")[1].strip()


def job(index: int) -> dict[str, object]:
    annotations = {"ucloud.dk/test-exit-code": "0", "ucloud.dk/test-exit-after": "5s"}
    return {
        "apiVersion": "ucloud.dk/v1",
        "kind": "UCloudJob",
        "metadata": {"name": f"j{index}"},
        "spec": {
            "replicas": REPLICAS,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            },
        },
    }


def main(jobs: int) -> None:
    cluster = os.environ.get("UCLOUD_CLUSTER", "itest")
    kubeconfig = str(Path.home() / ".cache" / "ucloud-operator" / f"kubeconfig-{cluster}")
    configuration = client.Configuration()
    config.load_kube_config(kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"cpu-{int(time.time())}"
    core.create_namespace({"metadata": {"name": namespace}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # pods need the namespace's default ServiceAccount
        try:
            core.read_namespaced_service_account("default", namespace)
            break
        except client.ApiException:
            time.sleep(0.2)
    log = Path("/tmp/cpu_probe.log").open("w")  # noqa: SIM115 - the operator's lifetime
    operator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ucloud_operator",
            "-n",
            namespace,
            "--metrics-address",
            f"127.0.0.1:{METRICS_PORT}",
            "--health-address",
            "127.0.0.1:0",
            "--lease-name",
            namespace,
            "--lease-namespace",
            namespace,
        ],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(4)  # let it start: its start-up CPU is not the jobs' cost
    profile = os.environ.get("UCLOUD_PROBE_PROFILE")
    spy = None
    if profile:  # py-spy from the bench extra; --nonblocking so it does not pause the operator
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(operator.pid),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                profile,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    before, started = cpu_seconds(operator.pid), time.monotonic()
    for index in range(jobs):
        custom.create_namespaced_custom_object(
            "ucloud.dk", "v1", namespace, "ucloudjobs", job(index)
        )
    done = 0
    while done < jobs and time.monotonic() - started < TIMEOUT_SECONDS:
        items = custom.list_namespaced_custom_object("ucloud.dk", "v1", namespace, "ucloudjobs")[
            "items"
        ]
        done = sum((j.get("status") or {}).get("state") == "SUCCESS" for j in items)
        time.sleep(1)
    used = cpu_seconds(operator.pid) - before
    print(
        f"N={jobs} R={REPLICAS} done={done} wall={time.monotonic() - started:.1f}s "
        f"cpu={used:.2f}s cpu/job={used / jobs * 1000:.1f}ms peak_rss={peak_rss(operator.pid)}"
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(COUNTED):  # per job: what the CPU is spent on
                name, _, value = line.rpartition(" ")
                print(f"  {name} {float(value) / jobs:.2f}/job")
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait()
    operator.terminate()
    operator.wait()
    core.delete_namespace(namespace)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
