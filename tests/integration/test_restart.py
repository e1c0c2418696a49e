"""The operator killed with SIGKILL mid-job and restarted converges: no pod created twice, no
transition lost, and expiries that fell due while it was down fire after the restart."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.cluster import Cluster, exits, history
from tests.support.operator import OperatorProcess
from ucloud_operator.models import JobState, Reason


def test_sigkill_mid_job_and_restart_converges(cluster: Cluster, killable: OperatorProcess) -> None:
    cluster.create_job("steady", replicas=3)
    cluster.create_job("finisher", replicas=2, annotations=exits(0, after="4s"))
    cluster.create_job("timed", deadline=3)
    for name in ("steady", "finisher", "timed"):
        cluster.wait_for_state(name, JobState.RUNNING)
    steady_pods = cluster.pod_uids("steady")
    finisher_pods = cluster.pod_uids("finisher")

    killable.kill()  # SIGKILL: no cleanup, no last writes
    cluster.create_job("latecomer", replicas=2)  # created while the operator is down
    expires = datetime.fromisoformat(cluster.status("timed")["expiresAt"].replace("Z", "+00:00"))
    cluster.wait_for(
        "finisher",
        "replicas to finish while the operator is down",
        lambda: all(p.status.phase == "Succeeded" for p in cluster.pods("finisher")),
    )
    cluster.wait_for(
        "timed",
        "the deadline to pass while the operator is down",
        lambda: datetime.now(UTC) > expires,
    )
    assert cluster.status("timed")["state"] == JobState.RUNNING  # nobody acted while it was down
    killable.start()

    # The killed process still holds the Lease until it runs out (15 s).
    finished = cluster.wait_for_state("finisher", JobState.SUCCESS, Reason.COMPLETED, timeout=60)
    expired = cluster.wait_for_state("timed", JobState.EXPIRED, Reason.DEADLINE_EXCEEDED)
    cluster.wait_for_state("latecomer", JobState.RUNNING)
    steady = cluster.wait_for_state("steady", JobState.RUNNING)
    assert history(finished) == [JobState.IN_QUEUE, JobState.RUNNING, JobState.SUCCESS]
    assert history(expired) == [JobState.IN_QUEUE, JobState.RUNNING, JobState.EXPIRED]
    assert history(steady) == [JobState.IN_QUEUE, JobState.RUNNING]
    assert cluster.pod_uids("steady") == steady_pods  # no pod created twice
    assert cluster.pod_uids("finisher") == finisher_pods


def test_sigkill_while_creating_pods_creates_each_pod_once(
    cluster: Cluster, killable: OperatorProcess
) -> None:
    cluster.create_job("wide", replicas=20)
    first = cluster.wait_for("wide", "the first pods", lambda: cluster.pod_uids("wide"))
    killable.kill()
    before = cluster.pod_uids("wide")
    assert set(first) <= set(before)
    killable.start()
    status = cluster.wait_for_state("wide", JobState.RUNNING, timeout=90)
    after = cluster.pod_uids("wide")
    assert len(after) == 20
    assert all(after[name] == uid for name, uid in before.items())  # none re-created
    assert history(status).count(JobState.IN_QUEUE) == 1
