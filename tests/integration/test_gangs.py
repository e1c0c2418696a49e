"""Gang admission on the real kube-scheduler (KWOK nodes: three of 4 cpu each): two gangs that
deadlock without it, and do not with it; a gang larger than the cluster; the PodGroups' life
with their jobs; a restart while gangs wait.

The local cluster serves the Workload API (hack/cluster.sh turns it on for the version it runs),
so the session's operator, in the default mode `auto`, uses it. tests/without_workload_api runs on
a cluster that does not serve it."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import (
    Cluster,
    PodCreations,
    busybox,
    in_artifacts,
    served_pod_group_version,
)
from tests.support.operator import OperatorProcess
from ucloud_operator import gangs
from ucloud_operator.models import JobState, Reason

# Each replica asks for 3 of a node's 4 cpu: one replica per node, three in the cluster.
THREE_CPU = busybox(resources={"requests": {"cpu": "3"}})
PLACEMENT_TIMEOUT = 60.0  # the scheduler retries unschedulable pods with backoff
MAX_BACKOFF = timedelta(seconds=11)  # kube-scheduler's podMaxBackoffSeconds (10), and a second


@pytest.fixture(scope="module")
def version(kubectl_bin: str, kubeconfig: str) -> str:
    """The scheduling.k8s.io version serving PodGroups here, as the operator finds it."""
    found = served_pod_group_version(kubectl_bin, kubeconfig)
    assert found, "the test cluster serves no podgroups: hack/cluster.sh turns them on"
    return found


@pytest.fixture
def room(cluster: Cluster) -> Iterator[Cluster]:
    """The test's namespace, once no pod of an earlier test holds cpu on the nodes; its jobs
    deleted after it, and their pods waited out, so the next test finds the room free."""

    def free() -> bool:
        pods = cluster.core.list_pod_for_all_namespaces().items
        return not any(_asks_cpu(p) and p.status.phase not in ("Succeeded", "Failed") for p in pods)

    cluster.wait_for("-", "no pod holding cpu", free, timeout=90)
    yield cluster
    for job in cluster.jobs():
        cluster.delete_job(job["metadata"]["name"], missing_ok=True)
    cluster.wait_for(
        "-",
        "the test's pods gone",
        lambda: not cluster.core.list_namespaced_pod(cluster.namespace).items,
        timeout=90,
    )


def _asks_cpu(pod: client.V1Pod) -> bool:
    return any(
        ((c.resources and c.resources.requests) or {}).get("cpu") for c in pod.spec.containers
    )


def groups(cluster: Cluster, version: str) -> dict[str, dict[str, Any]]:
    listed = cluster.custom.list_namespaced_custom_object(
        gangs.API_GROUP, version, cluster.namespace, gangs.PLURAL
    )
    return {g["metadata"]["name"]: g for g in listed["items"]}


def bound(cluster: Cluster, job: str) -> list[str]:
    return [p.metadata.name for p in cluster.pods(job) if p.spec.node_name]


def running(cluster: Cluster, job: str) -> bool:
    status = cluster.status(job)
    return status.get("state") == JobState.RUNNING and status.get("runningReplicas") == 3


def backed_off(cluster: Cluster, job: str) -> bool:
    """Every pod of `job` found unschedulable longer ago than kube-scheduler's longest retry
    backoff (podMaxBackoffSeconds, 10 s by default)."""
    now = datetime.now(UTC)
    pods = cluster.pods(job)
    found = [
        c.last_transition_time
        for p in pods
        for c in p.status.conditions or ()
        if c.type == "PodScheduled" and c.status == "False"
    ]
    return len(found) == len(pods) > 0 and all(now - t > MAX_BACKOFF for t in found)


def waiting_unplaced(cluster: Cluster, name: str) -> dict[str, Any]:
    """The job IN_QUEUE `Unschedulable` with none of its pods bound."""
    status = cluster.wait_for_state(
        name, JobState.IN_QUEUE, Reason.UNSCHEDULABLE, timeout=PLACEMENT_TIMEOUT
    )
    assert bound(cluster, name) == [], cluster.evidence(name)
    assert status["runningReplicas"] == 0
    return status


def test_the_operator_says_it_uses_gang_admission(
    room: Cluster, operator: OperatorProcess, version: str
) -> None:
    operator.wait_for_log(re.escape(f"a PodGroup of scheduling.k8s.io/{version} per job"), since=0)
    assert operator.scrape().value("ucloud_gang_admission", mode="auto", version=version) == 1
    assert '"podgroups listed": true' in operator.probe("/readyz")


def test_two_gangs_one_runs_the_other_waits_whole_then_runs(room: Cluster, version: str) -> None:
    for name in ("left", "right"):
        room.create_job(name, replicas=3, pod_spec=THREE_CPU)
    # Whichever the scheduler takes first runs with all three replicas; the other waits whole.
    running = room.wait_for(
        "left",
        "one of the gangs RUNNING",
        lambda: next(
            (n for n in ("left", "right") if room.status(n).get("state") == JobState.RUNNING),
            None,
        ),
        timeout=PLACEMENT_TIMEOUT,
    )
    other = "right" if running == "left" else "left"
    waiting = waiting_unplaced(room, other)
    assert waiting["message"], "the scheduler's own message"
    made = groups(room, version)
    assert {name: g["spec"]["schedulingPolicy"] for name, g in made.items()} == {
        "left": {"gang": {"minCount": 3}},
        "right": {"gang": {"minCount": 3}},
    }
    assert all(
        p.spec.scheduling_group.pod_group_name == name
        for name in ("left", "right")
        for p in room.pods(name)
    )

    room.patch_spec(running, {"cancel": True})  # the first ends ...
    room.wait_for_state(running, JobState.SUCCESS, Reason.CANCELLED)
    status = room.wait_for_state(other, JobState.RUNNING, timeout=PLACEMENT_TIMEOUT)  # ... and
    assert status["runningReplicas"] == 3  # the second runs, whole
    room.wait_for(
        running, "the ended gang's PodGroup deleted", lambda: running not in groups(room, version)
    )


def test_a_gang_larger_than_the_cluster_waits_unplaced_and_can_be_cancelled(
    room: Cluster, version: str
) -> None:
    room.create_job("huge", replicas=4, pod_spec=THREE_CPU)
    waiting_unplaced(room, "huge")
    room.patch_spec("huge", {"cancel": True})
    status = room.wait_for_state("huge", JobState.SUCCESS, Reason.CANCELLED)
    assert [u["state"] for u in status["updates"]] == [
        JobState.IN_QUEUE,
        JobState.CANCELING,
        JobState.SUCCESS,
    ]
    room.wait_for("huge", "its PodGroup deleted", lambda: "huge" not in groups(room, version))


def test_one_replica_gets_no_group_and_a_deleted_job_takes_its_group(
    room: Cluster, version: str
) -> None:
    room.create_job("solo", replicas=1)
    room.create_job("pair", replicas=2)
    room.wait_for_state("solo", JobState.RUNNING)
    room.wait_for_state("pair", JobState.RUNNING)
    assert set(groups(room, version)) == {"pair"}
    (solo,) = room.pods("solo")
    assert solo.spec.scheduling_group is None
    room.delete_job("pair")
    room.wait_for("pair", "the deleted job's PodGroup gone", lambda: not groups(room, version))


def test_a_restart_while_gangs_wait_makes_no_second_group_nor_pod(
    room: Cluster, killable: OperatorProcess, api_client: client.ApiClient, version: str
) -> None:
    creations = PodCreations(api_client, room.namespace)
    try:
        room.create_job("huge", replicas=4, pod_spec=THREE_CPU)
        waiting_unplaced(room, "huge")
        group_uid = groups(room, version)["huge"]["metadata"]["uid"]
        pods = room.pod_uids("huge")
        killable.kill()
        killable.start()
        # The restarted operator has seen the job again once its status carries its pods' news.
        room.patch_spec("huge", {"cancel": True})
        room.wait_for_state("huge", JobState.SUCCESS, Reason.CANCELLED, timeout=60)
        assert creations.twice() == {}
        assert set(creations.uids) == set(pods)
    finally:
        creations.stop()
    made = groups(room, version)
    assert set(made) <= {"huge"}  # deleted, or still going with its single uid
    assert all(g["metadata"]["uid"] == group_uid for g in made.values())


@pytest.fixture(scope="module")
def urgent(api_client: client.ApiClient) -> Iterator[str]:
    """A priority class above the default that never preempts: its pods go first in the
    scheduler's queue, and take only room that is free."""
    scheduling = client.SchedulingV1Api(api_client)
    name = "ucloud-test-urgent"
    body = {
        "metadata": {"name": name},
        "value": 1000,
        "preemptionPolicy": "Never",
        "description": "tests/integration/test_gangs.py",
    }
    try:
        scheduling.create_priority_class(body)
    except ApiException as error:
        if error.status != 409:
            raise
    yield name
    scheduling.delete_priority_class(name)


@pytest.fixture(params=["off", "auto"])
def gang_mode(
    request: pytest.FixtureRequest,
    room: Cluster,
    killable: OperatorProcess,
    kubeconfig: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The operator in each mode: the session's (auto), or one started with gang admission off
    in its place."""
    if request.param == "auto":
        yield "auto"
        return
    killable.kill(signal.SIGTERM)  # lets its Lease go
    off = OperatorProcess(
        kubeconfig,
        in_artifacts(tmp_path_factory, "operator-gangs-off.log"),
        extra_args=("--gang-admission=off", "--lease-name=ucloud-gangs-off"),
    )
    off.start()
    room.operator = off
    try:
        yield "off"
    finally:
        off.kill(signal.SIGTERM)
        room.operator = killable


def test_on_a_busy_cluster_two_gangs_deadlock_unless_placed_whole(
    room: Cluster, gang_mode: str, urgent: str, version: str
) -> None:
    """A busy cluster: a node is taken by other work when the gang `early` arrives, and `late`,
    more urgent, comes before the node is free again. Without gang admission `early` binds two
    replicas at once, `late` takes the node that frees, and both hold what the other needs for
    ever. With it, `early` binds nothing until it can bind all; `late` runs, then `early`."""
    blocker = room.core.create_namespaced_pod(
        room.namespace,
        {
            "metadata": {"name": "other-work"},
            "spec": {"nodeName": "ucloud-node-2", **THREE_CPU},
        },
    )
    room.wait_for(
        "early",
        "the other work running",
        lambda: (
            room.core.read_namespaced_pod(blocker.metadata.name, room.namespace).status.phase
            == "Running"
        ),
    )
    room.create_job("early", replicas=3, pod_spec=THREE_CPU)
    if gang_mode == "off":
        room.wait_for("early", "two replicas bound", lambda: len(bound(room, "early")) == 2)
    else:
        waiting_unplaced(room, "early")
    room.create_job("late", replicas=3, pod_spec={**THREE_CPU, "priorityClassName": urgent})
    room.wait_for_state("late", JobState.IN_QUEUE, Reason.UNSCHEDULABLE, timeout=PLACEMENT_TIMEOUT)
    # Once past the scheduler's retry backoff, the waiting replicas of both jobs are retried
    # together when room frees, in the order of their priority: `late` first.
    room.wait_for("late", "late's replicas past their backoff", lambda: backed_off(room, "late"))
    room.core.delete_namespaced_pod("other-work", room.namespace, grace_period_seconds=0)

    if gang_mode == "off":
        room.wait_for("late", "the freed node bound to late", lambda: bound(room, "late"))
        assert groups(room, version) == {}
        for name, holding in (("early", 2), ("late", 1)):
            # Each runs part of its replicas, and waits for room the other holds.
            room.wait_for(
                name,
                f"{holding} running, the rest unschedulable",
                lambda: room.status(name).get("runningReplicas") == holding,  # noqa: B023
            )
            status = room.status(name)
            assert (status["state"], status["reason"]) == (JobState.IN_QUEUE, Reason.UNSCHEDULABLE)
            assert len(bound(room, name)) == holding, room.evidence(name)
            assert all(p.spec.scheduling_group is None for p in room.pods(name))
        return
    # Whole or nothing: one of the two runs (the scheduler picks), the other binds nothing.
    first = room.wait_for(
        "late",
        "one of the gangs RUNNING",
        lambda: next((n for n in ("early", "late") if running(room, n)), None),
        timeout=PLACEMENT_TIMEOUT,
    )
    second = "early" if first == "late" else "late"
    waiting_unplaced(room, second)
    room.patch_spec(first, {"cancel": True})
    room.wait_for_state(first, JobState.SUCCESS, Reason.CANCELLED)
    then = room.wait_for_state(second, JobState.RUNNING, timeout=PLACEMENT_TIMEOUT)
    assert then["runningReplicas"] == 3
