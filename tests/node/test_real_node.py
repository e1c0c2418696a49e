"""What the real kubelet does to replicas, and the job state the operator makes of it.

Each test runs its job's replicas as real containers (containerd, runc) on the real node and
asserts the state, reason and replica status the contract gives for that case. The pod statuses
the kubelet writes here are the ground truth that hack/kwok-stages.yaml imitates
(docs/real-node.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from tests.support.cluster import Cluster
from tests.support.node import (
    ABSENT_IMAGE,
    IMAGE_PULL_GRACE,
    REAL_NODE,
    node_script,
    on_real_node,
    shell,
)
from tests.support.operator import NODE_LOST_GRACE
from ucloud_operator.cli import commands as cli

START = 60.0  # seconds for a real container to start on a busy 2-core machine


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _replica(status: dict[str, Any], rank: int = 0) -> dict[str, Any]:
    return next(r for r in status.get("replicaStatuses", []) if r["rank"] == rank)


def _event_time(event: client.CoreV1Event) -> datetime:
    return event.event_time or event.first_timestamp or event.metadata.creation_timestamp


def test_exit_0_is_success_completed(cluster: Cluster) -> None:
    cluster.create_job("ok", pod_spec=on_real_node(shell("exit 0")))
    status = cluster.wait_for_state("ok", "SUCCESS", "Completed", timeout=START)
    assert _replica(status)["exitCode"] == 0
    assert _replica(status)["node"] == REAL_NODE


def test_kubectl_ucloud_logs_shows_a_replicas_output(
    cluster: Cluster, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # KWOK serves no container logs: the plugin's `logs` is shown here, on a real container.
    cluster.create_job(
        "talks", pod_spec=on_real_node(shell("echo rank $UCLOUD_RANK of $UCLOUD_REPLICAS"))
    )
    cluster.wait_for_state("talks", "SUCCESS", "Completed", timeout=START)
    base = ["--kubeconfig", kubeconfig, "-n", cluster.namespace, "logs", "talks"]
    capsys.readouterr()
    assert cli.main(base) == 0
    assert capsys.readouterr().out.strip() == "rank 0 of 1"
    assert cli.main([*base, "--rank", "1"]) == 1  # no such replica: said, not a traceback
    assert "rank" in capsys.readouterr().err


def test_exit_3_is_success_non_zero_exit(cluster: Cluster) -> None:
    cluster.create_job("three", pod_spec=on_real_node(shell("exit 3")))
    status = cluster.wait_for_state("three", "SUCCESS", "NonZeroExit", timeout=START)
    assert _replica(status)["exitCode"] == 3
    assert "3" in status["message"]


def test_killed_by_a_signal_is_success_non_zero_exit(cluster: Cluster) -> None:
    # With a shared process namespace the shell is not PID 1, so SIGKILL reaches it.
    cluster.create_job(
        "signal", pod_spec=on_real_node(shell("kill -KILL $$$$"), shareProcessNamespace=True)
    )
    status = cluster.wait_for_state("signal", "SUCCESS", "NonZeroExit", timeout=START)
    assert _replica(status)["exitCode"] == 137  # 128 + SIGKILL; the kubelet never fills `signal`


def test_oom_killed_by_its_memory_limit(cluster: Cluster) -> None:
    hog = shell(
        'x="$$(head -c 200000000 /dev/zero | tr "\\000" a)"; echo survived',
        resources={"limits": {"memory": "32Mi"}},
    )
    cluster.create_job("oom", pod_spec=on_real_node(hog))
    status = cluster.wait_for_state("oom", "SUCCESS", "NonZeroExit", timeout=START)
    replica = _replica(status)
    assert (replica["exitCode"], replica["reason"]) == (137, "OOMKilled")


def test_unpullable_image_queues_then_fails(cluster: Cluster) -> None:
    cluster.create_job("pull", pod_spec=on_real_node({"image": ABSENT_IMAGE}))
    # A reason within IN_QUEUE is no new state, so it is seen in the status, not in `updates`.
    cluster.wait_for_state("pull", "IN_QUEUE", "ImagePulling", timeout=START)
    queued_seen = datetime.now(UTC)
    status = cluster.wait_for_state(
        "pull", "FAILURE", "ImagePullFailed", timeout=START + IMAGE_PULL_GRACE
    )
    assert ABSENT_IMAGE in status["message"]
    assert _replica(status)["reason"] in ("ErrImagePull", "ImagePullBackOff")
    # The grace runs from the pod's start, a second or two before the first failed pull.
    waited = _time(status["finishedAt"]) - queued_seen
    assert waited.total_seconds() >= IMAGE_PULL_GRACE - 6, waited


def test_invalid_image_name_fails_at_once(cluster: Cluster) -> None:
    cluster.create_job("badname", pod_spec=on_real_node({"image": "127.0.0.1:5999/Not_Valid:1"}))
    status = cluster.wait_for_state("badname", "FAILURE", "ImagePullFailed", timeout=START)
    assert "InvalidImageName" in status["message"]
    # At once: no image-pull grace was waited out before it.
    assert not any(u["state"] == "RUNNING" for u in status["updates"])


def test_missing_configmap_fails_container_creation(cluster: Cluster) -> None:
    missing = shell("sleep 300", envFrom=[{"configMapRef": {"name": "absent"}}])
    cluster.create_job("config", pod_spec=on_real_node(missing))
    status = cluster.wait_for_state(
        "config", "FAILURE", "ContainerCreateFailed", timeout=START + IMAGE_PULL_GRACE
    )
    assert "absent" in status["message"]


def test_expired_job_is_written_before_its_containers_stop(cluster: Cluster) -> None:
    cluster.create_job("expiry", pod_spec=on_real_node(shell("sleep 300")), deadline=3)
    cluster.wait_for_state("expiry", "RUNNING", timeout=START)
    status = cluster.wait_for_state("expiry", "EXPIRED", "DeadlineExceeded", timeout=30)
    expired_at = _time(next(u for u in status["updates"] if u["state"] == "EXPIRED")["timestamp"])
    killing = cluster.wait_for(
        "expiry",
        "the kubelet's Killing event",
        lambda: cluster.events("expiry-0", "Pod", "Killing"),
        timeout=30,
    )
    # Events have second precision: the container is stopped in the same second or later.
    assert _event_time(killing[0]).replace(microsecond=0) >= expired_at.replace(microsecond=0)
    cluster.wait_for("expiry", "the pod gone", lambda: not cluster.pods("expiry"), timeout=60)


def test_replica_killed_for_its_own_deadline_is_expired(cluster: Cluster) -> None:
    # The template's own activeDeadlineSeconds: the kubelet kills the pod, not the operator.
    cluster.create_job(
        "poddeadline", pod_spec=on_real_node(shell("sleep 300"), activeDeadlineSeconds=3)
    )
    status = cluster.wait_for_state("poddeadline", "EXPIRED", "DeadlineExceeded", timeout=START)
    # The kubelet writes the pod's reason DeadlineExceeded and kills the container (137, Error).
    assert _replica(status)["exitCode"] == 137


def test_cancel_of_a_running_gang_stops_its_containers(cluster: Cluster) -> None:
    cluster.create_job("cancel", replicas=2, pod_spec=on_real_node(shell("sleep 300")))
    cluster.wait_for_state("cancel", "RUNNING", timeout=START)
    cluster.patch_spec("cancel", {"cancel": True})
    cluster.wait_for_state("cancel", "SUCCESS", "Cancelled", timeout=60)
    states = [u["state"] for u in cluster.status("cancel")["updates"]]
    assert states[-2:] == ["CANCELING", "SUCCESS"]
    for rank in (0, 1):
        cluster.wait_for(
            "cancel",
            f"the kubelet's Killing event of cancel-{rank}",
            lambda r=rank: cluster.events(f"cancel-{r}", "Pod", "Killing"),
            timeout=30,
        )
    cluster.wait_for("cancel", "the pods gone", lambda: not cluster.pods("cancel"), timeout=60)


def test_ranks_reach_each_other_by_name(cluster: Cluster) -> None:
    # Rank 1 listens; rank 0 connects to <job>-1.<job> and exits 0 only when a message got
    # through, so the job ends Completed only if the name resolved and the connection worked.
    script = """
case "$UCLOUD_RANK" in
  1) nc -l -p 7000 > /tmp/got; grep -q hello /tmp/got; sleep 300 ;;
  0) for i in $(seq 1 60); do
       echo hello | nc -w 2 "$UCLOUD_JOB_NAME-1.$UCLOUD_JOB_NAME" 7000 && exit 0
       sleep 1
     done
     exit 7 ;;
  *) sleep 300 ;;
esac
""".replace("$", "$$")
    cluster.create_job("ranks", replicas=3, pod_spec=on_real_node(shell(script)))
    status = cluster.wait_for_state("ranks", "SUCCESS", timeout=START + 60)
    assert status["reason"] == "Completed", status["message"]
    assert _replica(status, 0)["exitCode"] == 0


def test_emptydir_over_its_size_limit_is_evicted_by_the_kubelet(cluster: Cluster) -> None:
    writer = shell(
        "head -c 8000000 /dev/zero > /scratch/fill; sleep 300",
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    spec = on_real_node(writer, volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}])
    cluster.create_job("evict", pod_spec=spec)
    status = cluster.wait_for_state("evict", "FAILURE", "Evicted", timeout=START + 60)
    assert "scratch" in status["message"], status["message"]


def test_zz_kubelet_stopped_under_a_running_job_is_node_lost(cluster: Cluster) -> None:
    # Last in the file: it takes the node down. The control plane runs with upstream's heartbeat
    # times here (hack/cluster.sh, UCLOUD_REAL_NODE=1): the node is marked Unknown 40 s after its
    # last heartbeat instead of kwokctl's 3m20s; the operator's node-lost grace is 3 s.
    cluster.create_job("lost", pod_spec=on_real_node(shell("sleep 600")))
    cluster.wait_for_state("lost", "RUNNING", timeout=START)
    node_script("kubelet-stop")
    try:
        status = cluster.wait_for_state(
            "lost", "FAILURE", "NodeLost", timeout=40 + 25 + NODE_LOST_GRACE + 30
        )
        assert REAL_NODE in status["message"]
    finally:
        node_script("kubelet-start")
