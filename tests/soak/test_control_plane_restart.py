"""The control plane restarts under the operator: kube-apiserver and etcd (every component) are
stopped and started again mid-run. The operator reconnects by itself, its watches resume, and no
job stays stuck longer than a stated bound. Soak only (`make soak`): it takes the whole cluster
down, which the other tests sharing it would not survive."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.cluster import ROOT, Cluster, OperatorProcess

CONVERGE_BOUND = 90.0  # seconds after the API server answers again


def kwokctl(*args: str) -> None:
    bin_dir = subprocess.run(["bash", str(ROOT / "hack" / "build-control-plane.sh")], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    cache = Path(os.environ.get("UCLOUD_CACHE", Path.home() / ".cache" / "ucloud-operator"))
    env = {**os.environ, "KWOK_WORKDIR": str(cache / "kwok"),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    name = os.environ.get("UCLOUD_CLUSTER", "ucloud")
    subprocess.run([f"{bin_dir}/kwokctl", "--name", name, *args], check=True, env=env,
                   capture_output=True, text=True, timeout=180)


def test_operator_survives_a_control_plane_restart(cluster: Cluster,
                                                   operator: OperatorProcess) -> None:
    before = [f"before-{i}" for i in range(5)]
    for name in before:
        cluster.create_job(name, replicas=2, annotations={"ucloud.dk/test-exit-code": "0",
                                                          "ucloud.dk/test-exit-after": "20s"})
    for name in before:
        cluster.wait_for_state(name, "RUNNING", timeout=60)
    kwokctl("stop", "cluster")
    time.sleep(5)  # the outage being tested, not a wait for an outcome
    kwokctl("start", "cluster")
    back = time.monotonic()
    cluster.wait_for("api", "the API server to answer",
                     lambda: cluster.core.list_namespace(limit=1) is not None, timeout=120)
    cluster.create_job("after", replicas=2, annotations={"ucloud.dk/test-exit-code": "0",
                                                         "ucloud.dk/test-exit-after": "2s"})
    for name in [*before, "after"]:
        status = cluster.wait_for_state(name, "SUCCESS", "Completed", timeout=CONVERGE_BOUND)
        assert status["updates"][0]["state"] == "IN_QUEUE"
    took = time.monotonic() - back
    assert operator.alive()
    print(f"converged {took:.1f}s after the control plane came back")
