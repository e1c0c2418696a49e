"""Every rule of docs/semantics.md and every reason of its tables, through a real API server."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import (
    DEADLINE_EXCEEDED,
    EVICT,
    EXIT_AFTER,
    IMAGE_PULL_FAIL,
    KUBELET_REJECT,
    NODE_LOST,
    STAY_PENDING,
    Cluster,
    busybox,
    exits,
    history,
    kubectl,
    pod_status,
    served_pod_group_version,
)
from tests.support.operator import IMAGE_PULL_GRACE, NODE_LOST_GRACE
from ucloud_operator.models import (
    ENV_JOB_NAME,
    ENV_RANK,
    ENV_REPLICAS,
    KIND,
    RANK_LABEL,
    JobState,
    Reason,
)

# --- Replica pods and rule 4 ----------------------------------------------------------------------


def test_replica_pods_service_and_running(cluster: Cluster) -> None:
    cluster.create_job("gang", replicas=3)
    status = cluster.wait_for_state("gang", JobState.RUNNING, Reason.ALL_REPLICAS_RUNNING)
    assert status["runningReplicas"] == 3 and status["replicas"] == 3
    assert status["message"] == "3/3 replicas running"
    assert status["startedAt"] and status["observedGeneration"] == 1
    pods = sorted(cluster.pods("gang"), key=lambda p: p.metadata.name)
    assert [p.metadata.name for p in pods] == ["gang-0", "gang-1", "gang-2"]
    for rank, pod in enumerate(pods):
        assert pod.metadata.labels[RANK_LABEL] == str(rank)
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.controller) == (KIND, True)
        assert pod.spec.restart_policy == "Never"
        assert (pod.spec.hostname, pod.spec.subdomain) == (f"gang-{rank}", "gang")
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env == {ENV_JOB_NAME: "gang", ENV_RANK: str(rank), ENV_REPLICAS: "3"}
        assert not any(k.startswith("kopf") for k in (pod.metadata.annotations or {}))
    service = cluster.core.read_namespaced_service("gang", cluster.namespace)
    assert service.spec.cluster_ip == "None"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Running": "True", "Finished": "False"}
    job = cluster.job("gang")
    assert not job["metadata"].get("finalizers")
    assert not any("kopf" in k for k in job["metadata"].get("annotations", {}))


def test_rule_4_waiting_for_replicas(cluster: Cluster) -> None:
    cluster.create_job("slow", replicas=2, annotations={STAY_PENDING: "true"})
    status = cluster.wait_for_state("slow", JobState.IN_QUEUE, Reason.WAITING_FOR_REPLICAS)
    assert status["message"] == "0/2 replicas running"
    assert [r["rank"] for r in status["replicaStatuses"]] == [0, 1]


def test_rule_4_unschedulable_with_room_for_only_two(
    cluster: Cluster, kubectl_bin: str, kubeconfig: str
) -> None:
    # Placed one by one, two of three replicas run; under gang admission none is bound.
    gang = served_pod_group_version(kubectl_bin, kubeconfig) is not None
    expected_running = 0 if gang else 2
    two_nodes = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": ["ucloud-node-0", "ucloud-node-1"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    big = {**busybox(resources={"requests": {"cpu": "3"}}), "affinity": two_nodes}
    cluster.create_job("big", replicas=3, pod_spec=big)

    def placed_as_it_can() -> dict[str, object] | None:
        status = cluster.status("big")
        running = status.get("runningReplicas")
        ok = status.get("reason") == Reason.UNSCHEDULABLE and running == expected_running
        return status if ok else None

    status = cluster.wait_for(
        "big", f"Unschedulable with {expected_running} running", placed_as_it_can
    )
    assert status["state"] == JobState.IN_QUEUE
    if gang:  # the group's verdict: 1.37 counts, 1.36 says only that it cannot be placed
        assert "cannot be satisfied" in status["message"] or "unschedulable" in status["message"]
        assert not [p for p in cluster.pods("big") if p.spec.node_name]
    else:
        assert "insufficient cpu" in str(status["message"]).lower()


# --- Rule 3c: SUCCESS ---------------------------------------------------------------------------


def test_rule_3c_completed(cluster: Cluster) -> None:
    cluster.create_job("done", replicas=2, annotations=exits(0))
    status = cluster.wait_for_state("done", JobState.SUCCESS, Reason.COMPLETED)
    assert status["finishedAt"]
    assert history(status) == [JobState.IN_QUEUE, JobState.RUNNING, JobState.SUCCESS]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Finished"] == JobState.SUCCESS
    cluster.wait_for_event("done", Reason.COMPLETED)
    reasons = [e.reason for e in cluster.events("done")]
    assert sorted(reasons) == sorted(
        [Reason.WAITING_FOR_REPLICAS, Reason.ALL_REPLICAS_RUNNING, Reason.COMPLETED]
    )


def test_rule_3c_non_zero_exit_is_success(cluster: Cluster) -> None:
    cluster.create_job("fails", annotations=exits(3, after="500ms"))
    status = cluster.wait_for_state("fails", JobState.SUCCESS, Reason.NON_ZERO_EXIT)
    assert "exited with code 3" in status["message"]
    assert status["replicaStatuses"][0]["exitCode"] == 3


def test_rule_3c_oom_killed_is_success_with_the_reason(cluster: Cluster) -> None:
    cluster.create_job("oom", annotations=exits(137, after="500ms", reason="OOMKilled"))
    status = cluster.wait_for_state("oom", JobState.SUCCESS, Reason.NON_ZERO_EXIT)
    assert status["replicaStatuses"][0]["reason"] == "OOMKilled"


def test_rule_3c_signal_is_success_with_the_signal(cluster: Cluster) -> None:
    cluster.create_job("killed", annotations=exits(137, after="500ms", signal=9))
    status = cluster.wait_for_state("killed", JobState.SUCCESS, Reason.NON_ZERO_EXIT)
    assert status["replicaStatuses"][0]["signal"] == 9


def test_rule_3c_first_replica_to_end_ends_the_gang(cluster: Cluster) -> None:
    cluster.create_job("gang", replicas=2)
    cluster.wait_for_state("gang", JobState.RUNNING)
    # Played by hand: the kubelet's own reason, not a reason of the operator's.
    terminated = pod_status("Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed"}})
    cluster.patch_pod_status("gang-0", terminated)
    cluster.wait_for_state("gang", JobState.SUCCESS, Reason.COMPLETED)
    cluster.wait_for(
        "gang",
        "gang-1 deleted",
        lambda: all(p.metadata.name != "gang-1" for p in cluster.pods("gang")),
    )

    cluster.wait_for("gang", "its headless Service deleted", lambda: not cluster.services("gang"))
    assert [p.metadata.name for p in cluster.pods("gang")] == ["gang-0"]  # kept for its logs


# --- Rule 3a: FAILURE ----------------------------------------------------------------------------


def test_rule_3a_pod_creation_failed_over_quota(cluster: Cluster) -> None:
    cluster.core.create_namespaced_resource_quota(
        cluster.namespace, {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}}
    )
    cluster.wait_for(
        "quota",
        "quota status",
        lambda: (
            cluster.core.read_namespaced_resource_quota("one-pod", cluster.namespace).status.hard
        ),
    )
    cluster.create_job("over", replicas=2)
    status = cluster.wait_for_state("over", JobState.FAILURE, Reason.POD_CREATION_FAILED)
    assert "exceeded quota" in status["message"]


def test_rule_3a_image_pulling_then_image_pull_failed(cluster: Cluster) -> None:
    cluster.create_job("noimage", annotations={IMAGE_PULL_FAIL: "true"})
    cluster.wait_for_state("noimage", JobState.IN_QUEUE, Reason.IMAGE_PULLING)
    status = cluster.wait_for_state(
        "noimage", JobState.FAILURE, Reason.IMAGE_PULL_FAILED, timeout=IMAGE_PULL_GRACE + 30
    )
    assert "ErrImagePull" in status["message"]


def test_rule_3a_invalid_image_name_fails_at_once(cluster: Cluster) -> None:
    cluster.create_job("badname", annotations={STAY_PENDING: "true"})
    cluster.wait_for_pods("badname", 1)
    cluster.patch_pod_status("badname-0", waiting("InvalidImageName", "couldn't parse image"))
    cluster.wait_for_state("badname", JobState.FAILURE, Reason.IMAGE_PULL_FAILED)


def waiting(reason: str, message: str) -> dict[str, object]:
    return pod_status(
        "Pending",
        {"waiting": {"reason": reason, "message": message}},
        startTime=rfc3339(time.time()),
    )


def test_rule_3a_container_creating_then_container_create_failed(cluster: Cluster) -> None:
    cluster.create_job("nosecret", annotations={STAY_PENDING: "true"})
    cluster.wait_for_pods("nosecret", 1)
    cluster.patch_pod_status(
        "nosecret-0", waiting("CreateContainerConfigError", 'secret "s" not found')
    )
    cluster.wait_for_state("nosecret", JobState.IN_QUEUE, Reason.CONTAINER_CREATING)
    status = cluster.wait_for_state(
        "nosecret", JobState.FAILURE, Reason.CONTAINER_CREATE_FAILED, timeout=IMAGE_PULL_GRACE + 30
    )
    assert 'secret "s" not found' in status["message"]


def test_rule_3a_evicted(cluster: Cluster) -> None:
    cluster.create_job("evicted", replicas=2, annotations={EVICT: "true", EXIT_AFTER: "1s"})
    status = cluster.wait_for_state("evicted", JobState.FAILURE, Reason.EVICTED)
    assert history(status)[-1] == JobState.FAILURE


def test_rule_3a_node_lost(cluster: Cluster) -> None:
    cluster.create_job("lost", annotations={NODE_LOST: "true", EXIT_AFTER: "1s"})
    cluster.wait_for_state("lost", JobState.FAILURE, Reason.NODE_LOST)


def rfc3339(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


class FakeNode:
    """A KWOK node of the test's own, which it can make stop reporting as Kubernetes 1.36's
    node lifecycle controller shows it: Ready Unknown and the unreachable taints.

    kwokctl's kwok-controller manages every node (--manage-all-nodes) and sets a node that is not
    Ready back to Ready at once. To hold the node lost, a ValidatingAdmissionPolicy refuses any
    status write of this one node that says Ready=True (kwok retries with backoff; nothing else
    is touched)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.name = f"ucloud-lost-{uuid.uuid4().hex[:6]}"
        self.admission = client.AdmissionregistrationV1Api(cluster.core.api_client)

    def create(self) -> None:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "type": "kwok"}
        self.cluster.core.create_node(
            {
                "metadata": {
                    "name": self.name,
                    "labels": labels,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
                "status": {
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                },
            }
        )
        self.cluster.wait_for(self.name, f"node {self.name} Ready", lambda: self.ready() == "True")

    def ready(self) -> str | None:
        conditions = self.cluster.core.read_node(self.name).status.conditions or []
        return next((c.status for c in conditions if c.type == "Ready"), None)

    def stop_reporting(self) -> float:
        """Hold the node lost, from now on; when, in seconds since the epoch."""
        self._hold_lost()
        lost_at = time.time()
        self.cluster.core.patch_node_status(
            self.name,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "Unknown",
                            "reason": "NodeStatusUnknown",
                            "message": "Kubelet stopped posting node status.",
                            "lastHeartbeatTime": rfc3339(lost_at - 40),
                            "lastTransitionTime": rfc3339(lost_at),
                        }
                    ]
                }
            },
        )
        taint = "node.kubernetes.io/unreachable"
        self.cluster.core.patch_node(
            self.name,
            {
                "spec": {
                    "taints": [
                        {"key": taint, "effect": "NoSchedule"},
                        {"key": taint, "effect": "NoExecute", "timeAdded": rfc3339(lost_at)},
                    ]
                }
            },
        )
        return lost_at

    def _hold_lost(self) -> None:
        self.admission.create_validating_admission_policy(
            {
                "metadata": {"name": self.name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["UPDATE"],
                                "resources": ["nodes/status"],
                            }
                        ]
                    },
                    "matchConditions": [
                        {
                            "name": "this-node",
                            "expression": f"object.metadata.name == '{self.name}'",
                        }
                    ],
                    "validations": [
                        {
                            "expression": "!object.status.conditions.exists(c, c.type == 'Ready' "
                            "&& c.status == 'True')",
                            "message": "the test holds this node lost",
                        }
                    ],
                },
            }
        )
        self.admission.create_validating_admission_policy_binding(
            {
                "metadata": {"name": self.name},
                "spec": {"policyName": self.name, "validationActions": ["Deny"]},
            }
        )

        def refuses_ready() -> bool:  # the policy is in force once a dry run of kwok's write fails
            try:
                self.cluster.core.patch_node_status(
                    self.name,
                    {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                    dry_run="All",
                )
            except ApiException as error:
                return "holds this node lost" in str(error.body)
            return False

        self.cluster.wait_for(self.name, "the policy holding the node lost", refuses_ready)

    def delete(self) -> None:
        for delete in (
            lambda: self.cluster.core.delete_node(self.name),
            lambda: self.admission.delete_validating_admission_policy_binding(self.name),
            lambda: self.admission.delete_validating_admission_policy(self.name),
        ):
            try:
                delete()
            except ApiException as error:
                if error.status != 404:
                    raise


@contextmanager
def fake_node(cluster: Cluster) -> Iterator[FakeNode]:
    node = FakeNode(cluster)
    try:
        node.create()
        yield node
    finally:
        node.delete()


def test_rule_3a_node_lost_when_its_node_stops_reporting(cluster: Cluster) -> None:
    # Kubernetes >= 1.36: the node is marked, not the pod, which stays Running.
    with fake_node(cluster) as node:
        # Tolerating the taint for an hour keeps the taint manager's eviction out of the way:
        # only the node's own state can fail the job here.
        stays = [
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 3600,
            }
        ]
        spec = {**busybox(), "nodeName": node.name, "tolerations": stays}
        cluster.create_job("stranded", pod_spec=spec)
        cluster.wait_for_state("stranded", JobState.RUNNING, Reason.ALL_REPLICAS_RUNNING)
        node.stop_reporting()
        status = cluster.wait_for_state(
            "stranded", JobState.FAILURE, Reason.NODE_LOST, timeout=NODE_LOST_GRACE + 30
        )
        match = re.fullmatch(
            rf"replica 0 \(stranded-0\): its node {node.name} stopped reporting (\d+)s ago "
            rf"\(Ready=Unknown\)",
            status["message"],
        )
        assert match, status["message"]
        assert int(match.group(1)) >= NODE_LOST_GRACE  # it waited for the grace
        assert cluster.wait_for_event("stranded", Reason.NODE_LOST).type == "Warning"


def test_rule_3a_kubelet_rejected(cluster: Cluster) -> None:
    cluster.create_job("rejected", annotations={KUBELET_REJECT: "OutOfcpu"})
    status = cluster.wait_for_state("rejected", JobState.FAILURE, Reason.KUBELET_REJECTED)
    assert "OutOfcpu" in status["message"]


def test_rule_3a_pod_lost_when_someone_deletes_a_replica(cluster: Cluster) -> None:
    cluster.create_job("victim", replicas=2)
    cluster.wait_for_state("victim", JobState.RUNNING)
    cluster.core.delete_namespaced_pod("victim-1", cluster.namespace)
    status = cluster.wait_for_state("victim", JobState.FAILURE, Reason.POD_LOST)
    assert "replica 1" in status["message"]
    assert all(
        p.metadata.name != "victim-1" or p.metadata.deletion_timestamp
        for p in cluster.pods("victim")
    )


def test_rule_3a_pod_lost_when_a_pending_replica_is_deleted_at_once(cluster: Cluster) -> None:
    # An unscheduled pod is deleted without a grace period: its watch sends DELETED alone, with
    # no update carrying a deletionTimestamp before it.
    nowhere = {**busybox(), "nodeSelector": {"kubernetes.io/hostname": "nowhere"}}
    cluster.create_job("stray", replicas=2, pod_spec=nowhere)
    cluster.wait_for(
        "stray",
        "both replicas recorded",
        lambda: len(cluster.status("stray").get("replicaStatuses") or []) == 2,
    )
    cluster.core.delete_namespaced_pod("stray-0", cluster.namespace)
    status = cluster.wait_for_state("stray", JobState.FAILURE, Reason.POD_LOST)
    assert "replica 0" in status["message"]


def test_rule_3a_template_not_allowed(cluster: Cluster) -> None:
    cluster.create_job("root", pod_spec=busybox(securityContext={"privileged": True}))
    status = cluster.wait_for_state("root", JobState.FAILURE, Reason.TEMPLATE_NOT_ALLOWED)
    assert "privileged" in status["message"]
    assert cluster.pods("root") == []


# --- Rule 3b: EXPIRED ----------------------------------------------------------------------------


def test_rule_3b_deadline_exceeded(cluster: Cluster) -> None:
    cluster.create_job("timed", deadline=2)
    running = cluster.wait_for_state("timed", JobState.RUNNING)
    assert running["expiresAt"]
    status = cluster.wait_for_state("timed", JobState.EXPIRED, Reason.DEADLINE_EXCEEDED, timeout=30)
    assert history(status) == [JobState.IN_QUEUE, JobState.RUNNING, JobState.EXPIRED]
    cluster.wait_for(
        "timed",
        "pods deleted",
        lambda: (
            all(p.metadata.deletion_timestamp for p in cluster.pods("timed"))
            or not cluster.pods("timed")
        ),
    )
    assert cluster.wait_for_event("timed", Reason.DEADLINE_EXCEEDED).type == "Warning"


def test_rule_3b_raising_the_deadline_moves_expires_at(cluster: Cluster) -> None:
    cluster.create_job("extend", deadline=600)
    first = cluster.wait_for_state("extend", JobState.RUNNING)
    cluster.patch_spec("extend", {"activeDeadlineSeconds": 7200})

    def moved() -> dict[str, object] | None:
        status = cluster.status("extend")
        return status if status.get("expiresAt") != first["expiresAt"] else None

    status = cluster.wait_for("extend", "expiresAt to move", moved)
    assert status["state"] == JobState.RUNNING and status["observedGeneration"] == 2


def test_rule_3b_pod_deadline_exceeded_expires_the_job(cluster: Cluster) -> None:
    cluster.create_job("poddeadline", annotations={DEADLINE_EXCEEDED: "true", EXIT_AFTER: "1s"})
    cluster.wait_for_state("poddeadline", JobState.EXPIRED, Reason.DEADLINE_EXCEEDED)


# --- Rule 2: cancel ------------------------------------------------------------------------------


def test_rule_2_cancel_passes_through_canceling_to_success(cluster: Cluster) -> None:
    cluster.create_job("cancelme", replicas=2)
    cluster.wait_for_state("cancelme", JobState.RUNNING)
    cluster.patch_spec("cancelme", {"cancel": True})
    status = cluster.wait_for_state("cancelme", JobState.SUCCESS, Reason.CANCELLED)
    assert history(status) == [
        JobState.IN_QUEUE,
        JobState.RUNNING,
        JobState.CANCELING,
        JobState.SUCCESS,
    ]
    cluster.wait_for("cancelme", "pods gone", lambda: not cluster.pods("cancelme"))


# --- Rule 1: final is final ----------------------------------------------------------------------


def test_rule_1_final_state_does_not_change_under_later_pod_events(cluster: Cluster) -> None:
    cluster.create_job("final", annotations=exits(0, after="500ms"))
    before = cluster.wait_for_state("final", JobState.SUCCESS, Reason.COMPLETED)
    cluster.core.delete_namespaced_pod("final-0", cluster.namespace)
    cluster.wait_for("final", "pod gone", lambda: not cluster.pods("final"))
    # Evidence that the operator has handled the deletion before anything is judged. It watches
    # the namespace's replica pods as one stream, in the order the API server wrote them, and
    # queues the job of each pod event for a pass (a FIFO queue). A job created now reaches
    # RUNNING only once the operator has seen its pods' later events in that stream: by then
    # it had seen final-0 deleted and queued "final", ahead of the witness.
    cluster.create_job("witness")
    cluster.wait_for_state("witness", JobState.RUNNING)
    after = cluster.status("final")
    assert (after["state"], after["reason"], after["updates"], after["finishedAt"]) == (
        before["state"],
        before["reason"],
        before["updates"],
        before["finishedAt"],
    )
    # The replica ended on its own before it was deleted: it is not "Missing".
    assert [r["phase"] for r in after["replicaStatuses"]] == ["Succeeded"]


# --- Deletion ------------------------------------------------------------------------------------


def test_deleting_a_job_garbage_collects_its_pods_and_service(cluster: Cluster) -> None:
    cluster.create_job("doomed", replicas=2)
    cluster.wait_for_state("doomed", JobState.RUNNING)
    cluster.delete_job("doomed")

    def collected() -> bool:
        return not cluster.pods("doomed") and not cluster.services("doomed")

    cluster.wait_for("doomed", "pods and Service collected", collected, timeout=60)


def test_kubectl_wait_for_finished_condition_works(
    cluster: Cluster, kubectl_bin: str, kubeconfig: str
) -> None:
    cluster.create_job("waitme", annotations=exits(0))
    result = kubectl(
        kubectl_bin,
        kubeconfig,
        "wait",
        "-n",
        cluster.namespace,
        "--for=condition=Finished",
        "ujob/waitme",
        "--timeout=60s",
        check=False,
    )
    assert result.returncode == 0, result.stderr + cluster.evidence("waitme")


def test_events_carry_the_reason_and_warnings_for_failure(cluster: Cluster) -> None:
    cluster.create_job("warned", annotations={EVICT: "true", EXIT_AFTER: "1s"})
    status = cluster.wait_for_state("warned", JobState.FAILURE, Reason.EVICTED)

    def three_events() -> list[client.CoreV1Event] | None:
        found = cluster.events("warned")
        return found if len(found) >= 3 else None

    events = {e.reason: e for e in cluster.wait_for("warned", "3 events", three_events)}
    assert events[Reason.EVICTED].type == "Warning"
    assert events[Reason.WAITING_FOR_REPLICAS].type == "Normal"
    # The Event tells the transition and the status message it wrote.
    was = history(status)[-2]
    assert events[Reason.EVICTED].message == f"{was} -> {JobState.FAILURE}: {status['message']}"
