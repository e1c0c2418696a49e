"""The operator killed with SIGKILL mid-job and restarted converges: no pod created twice, no
transition lost, and expiries that fell due while it was down fire after the restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.cluster import Cluster, OperatorProcess


@pytest.fixture
def restartable(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    yield operator
    if not operator.alive():  # leave the session's operator running for the next tests
        operator.start()


def pod_uids(cluster: Cluster, job: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.uid for p in cluster.pods(job)}


def test_sigkill_mid_job_and_restart_converges(cluster: Cluster,
                                               restartable: OperatorProcess) -> None:
    cluster.create_job("steady", replicas=3)
    cluster.create_job("finisher", replicas=2,
                       annotations={"ucloud.dk/test-exit-code": "0",
                                    "ucloud.dk/test-exit-after": "4s"})
    cluster.create_job("timed", deadline=3)
    for name in ("steady", "finisher", "timed"):
        cluster.wait_for_state(name, "RUNNING")
    steady_pods = pod_uids(cluster, "steady")
    finisher_pods = pod_uids(cluster, "finisher")

    restartable.kill()  # SIGKILL: no cleanup, no last writes
    cluster.create_job("latecomer", replicas=2)  # created while the operator is down
    expires = datetime.fromisoformat(cluster.status("timed")["expiresAt"].replace("Z", "+00:00"))
    cluster.wait_for("finisher", "replicas to finish while the operator is down",
                     lambda: all(p.status.phase == "Succeeded" for p in cluster.pods("finisher")))
    cluster.wait_for("timed", "the deadline to pass while the operator is down",
                     lambda: datetime.now(UTC) > expires)
    assert cluster.status("timed")["state"] == "RUNNING"  # nobody acted while it was down
    restartable.start()

    # The killed process still holds the Lease until it runs out (15 s).
    finished = cluster.wait_for_state("finisher", "SUCCESS", "Completed", timeout=60)
    expired = cluster.wait_for_state("timed", "EXPIRED", "DeadlineExceeded")
    cluster.wait_for_state("latecomer", "RUNNING")
    steady = cluster.wait_for_state("steady", "RUNNING")
    assert [u["state"] for u in finished["updates"]] == ["IN_QUEUE", "RUNNING", "SUCCESS"]
    assert [u["state"] for u in expired["updates"]] == ["IN_QUEUE", "RUNNING", "EXPIRED"]
    assert [u["state"] for u in steady["updates"]] == ["IN_QUEUE", "RUNNING"]
    assert pod_uids(cluster, "steady") == steady_pods  # no pod created twice
    assert pod_uids(cluster, "finisher") == finisher_pods


def test_sigkill_while_creating_pods_creates_each_pod_once(cluster: Cluster,
                                                          restartable: OperatorProcess) -> None:
    cluster.create_job("wide", replicas=20)
    first = cluster.wait_for("wide", "the first pods", lambda: pod_uids(cluster, "wide"))
    restartable.kill()
    before = pod_uids(cluster, "wide")
    assert set(first) <= set(before)
    restartable.start()
    status = cluster.wait_for_state("wide", "RUNNING", timeout=90)
    after = pod_uids(cluster, "wide")
    assert len(after) == 20
    assert all(after[name] == uid for name, uid in before.items())  # none re-created
    assert [u["state"] for u in status["updates"]].count("IN_QUEUE") == 1
