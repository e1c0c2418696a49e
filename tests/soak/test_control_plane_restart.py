"""The control plane restarts under the operator: kube-apiserver and etcd are stopped and started
again (same command lines) mid-run. The operator reconnects by itself, its watches resume, and no
job stays stuck longer than a stated bound. Soak only (`make soak`): it takes the whole cluster
down, which the other tests sharing it would not survive."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster, busybox, exits, history
from tests.support.operator import OperatorProcess
from tests.support.poll import poll
from ucloud_operator.models import JobState, Reason

CONVERGE_BOUND = 90.0  # seconds after the API server answers again


def component_pid(component: str) -> int:
    name = os.environ.get("UCLOUD_CLUSTER", "ucloud")
    out = subprocess.run(
        ["pgrep", "-f", f"clusters/{name}/bin/{component} "],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(out) == 1, f"expected one {component} process, got {out}"
    return int(out[0])


def stop(component: str) -> tuple[list[str], str]:
    """Stop a control-plane process; return how to start it again (its command line, cwd)."""
    pid = component_pid(component)
    command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    cwd = os.readlink(f"/proc/{pid}/cwd")
    os.kill(pid, signal.SIGTERM)
    poll(
        f"{component} to exit",
        lambda: exited(pid),
        lambda: f"{component} (pid {pid}) still runs",
        120,  # kube-apiserver stops listening at once, but drains for up to a minute or so
    )
    return command, cwd


def exited(pid: int) -> bool:
    """Gone, or a zombie: kwokctl's processes are not our children, and whoever inherited
    them may never reap them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def start(command: list[str], cwd: str) -> None:
    log = Path(cwd) / "logs" / f"{Path(command[0]).name}.restarted.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("ab") as out:
        subprocess.Popen(command, cwd=cwd, stdout=out, stderr=out, start_new_session=True)


def test_operator_survives_a_control_plane_restart(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    before = [f"before-{i}" for i in range(5)]
    for name in before:
        cluster.create_job(name, replicas=2, annotations=exits(0, after="20s"))
    for name in before:
        cluster.wait_for_state(name, JobState.RUNNING, timeout=60)
    log = operator.log_size()
    apiserver = stop("kube-apiserver")
    etcd = stop("etcd")
    # The outage lasts until the operator has felt it: its watches broke and it retries.
    operator.wait_for_log(r"watch of .* \(retry in", since=log)
    start(*etcd)
    start(*apiserver)
    back = time.monotonic()

    def created() -> bool:  # refused, then 503 until its CRD paths are back
        try:
            # Placed by hand: kube-scheduler (not under test) did not always resume after the
            # restart here, and the question is whether the operator does.
            cluster.create_job(
                "after",
                replicas=2,
                annotations=exits(0, after="2s"),
                pod_spec={**busybox(), "nodeName": "ucloud-node-0"},
            )
        except ApiException as error:
            if error.status == 409:  # an earlier try went through
                return True
            raise
        except Exception:  # the connection is refused while it starts
            return False
        return True

    cluster.wait_for("after", "the API server to take a new job", created, timeout=120)
    for name in [*before, "after"]:
        status = cluster.wait_for_state(
            name, JobState.SUCCESS, Reason.COMPLETED, timeout=CONVERGE_BOUND
        )
        assert history(status)[0] == JobState.IN_QUEUE
    took = time.monotonic() - back
    assert operator.alive()
    print(f"converged {took:.1f}s after the control plane came back")
