"""Every rule of docs/semantics.md and every reason of its tables, through a real API server."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster import IMAGE_PULL_GRACE, NODE_LOST_GRACE, Cluster, kubectl

# Annotations read by the KWOK stages of hack/kwok-stages.yaml.
EXIT = "ucloud.dk/test-exit-code"
EXIT_AFTER = "ucloud.dk/test-exit-after"
EXIT_REASON = "ucloud.dk/test-exit-reason"
EXIT_SIGNAL = "ucloud.dk/test-exit-signal"


def updates(status: dict[str, object]) -> list[str]:
    return [u["state"] for u in status.get("updates", [])]  # type: ignore[attr-defined,index]


# --- Replica pods and rule 4 ----------------------------------------------------------------------


def test_replica_pods_service_and_running(cluster: Cluster) -> None:
    cluster.create_job("gang", replicas=3)
    status = cluster.wait_for_state("gang", "RUNNING", "AllReplicasRunning")
    assert status["runningReplicas"] == 3 and status["replicas"] == 3
    assert status["message"] == "3/3 replicas running"
    assert status["startedAt"] and status["observedGeneration"] == 1
    pods = sorted(cluster.pods("gang"), key=lambda p: p.metadata.name)
    assert [p.metadata.name for p in pods] == ["gang-0", "gang-1", "gang-2"]
    for rank, pod in enumerate(pods):
        assert pod.metadata.labels["ucloud.dk/rank"] == str(rank)
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.controller) == ("UCloudJob", True)
        assert pod.spec.restart_policy == "Never"
        assert (pod.spec.hostname, pod.spec.subdomain) == (f"gang-{rank}", "gang")
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env == {"UCLOUD_JOB_NAME": "gang", "UCLOUD_RANK": str(rank),
                       "UCLOUD_REPLICAS": "3"}
        assert not any(k.startswith("kopf") for k in (pod.metadata.annotations or {}))
    service = cluster.core.read_namespaced_service("gang", cluster.namespace)
    assert service.spec.cluster_ip == "None"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Running": "True", "Finished": "False"}
    job = cluster.job("gang")
    assert not job["metadata"].get("finalizers")
    assert not any("kopf" in k for k in job["metadata"].get("annotations", {}))


def test_rule_4_waiting_for_replicas(cluster: Cluster) -> None:
    cluster.create_job("slow", replicas=2, annotations={"ucloud.dk/test-stay-pending": "true"})
    status = cluster.wait_for_state("slow", "IN_QUEUE", "WaitingForReplicas")
    assert status["message"] == "0/2 replicas running"
    assert [r["rank"] for r in status["replicaStatuses"]] == [0, 1]


def test_rule_4_unschedulable_with_room_for_only_two(cluster: Cluster) -> None:
    two_nodes = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{
            "key": "kubernetes.io/hostname", "operator": "In",
            "values": ["ucloud-node-0", "ucloud-node-1"]}]}]}}}
    big = {"containers": [{"name": "main", "image": "busybox",
                           "resources": {"requests": {"cpu": "3"}}}],
           "affinity": two_nodes}
    cluster.create_job("big", replicas=3, pod_spec=big)

    def two_running_one_unschedulable() -> dict[str, object] | None:
        status = cluster.status("big")
        ok = (status.get("reason") == "Unschedulable" and status.get("runningReplicas") == 2)
        return status if ok else None

    status = cluster.wait_for("big", "Unschedulable with 2 running", two_running_one_unschedulable)
    assert status["state"] == "IN_QUEUE"
    assert "Insufficient cpu" in str(status["message"]) or "insufficient" in str(
        status["message"]).lower()


# --- Rule 3c: SUCCESS ---------------------------------------------------------------------------


def test_rule_3c_completed(cluster: Cluster) -> None:
    cluster.create_job("done", replicas=2, annotations={EXIT: "0", EXIT_AFTER: "1s"})
    status = cluster.wait_for_state("done", "SUCCESS", "Completed")
    assert status["finishedAt"]
    assert updates(status) == ["IN_QUEUE", "RUNNING", "SUCCESS"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Finished"] == "SUCCESS"
    cluster.wait_for_event("done", "Completed")
    reasons = [e.reason for e in cluster.events("done")]
    assert sorted(reasons) == sorted(["WaitingForReplicas", "AllReplicasRunning", "Completed"])


def test_rule_3c_non_zero_exit_is_success(cluster: Cluster) -> None:
    cluster.create_job("fails", annotations={EXIT: "3", EXIT_AFTER: "500ms"})
    status = cluster.wait_for_state("fails", "SUCCESS", "NonZeroExit")
    assert "exited with code 3" in status["message"]
    assert status["replicaStatuses"][0]["exitCode"] == 3


def test_rule_3c_oom_killed_is_success_with_the_reason(cluster: Cluster) -> None:
    cluster.create_job("oom", annotations={EXIT: "137", EXIT_REASON: "OOMKilled",
                                           EXIT_AFTER: "500ms"})
    status = cluster.wait_for_state("oom", "SUCCESS", "NonZeroExit")
    assert status["replicaStatuses"][0]["reason"] == "OOMKilled"


def test_rule_3c_signal_is_success_with_the_signal(cluster: Cluster) -> None:
    cluster.create_job("killed", annotations={EXIT: "137", EXIT_SIGNAL: "9",
                                              EXIT_AFTER: "500ms"})
    status = cluster.wait_for_state("killed", "SUCCESS", "NonZeroExit")
    assert status["replicaStatuses"][0]["signal"] == 9


def test_rule_3c_first_replica_to_end_ends_the_gang(cluster: Cluster) -> None:
    cluster.create_job("gang", replicas=2)
    cluster.wait_for_state("gang", "RUNNING")
    terminated = {"phase": "Succeeded", "containerStatuses": [{
        "name": "main", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    cluster.patch_pod_status("gang-0", terminated)
    cluster.wait_for_state("gang", "SUCCESS", "Completed")
    cluster.wait_for("gang", "gang-1 deleted",
                     lambda: all(p.metadata.name != "gang-1" for p in cluster.pods("gang")))

    def service_gone() -> bool:
        services = cluster.core.list_namespaced_service(cluster.namespace).items
        return all(s.metadata.name != "gang" for s in services)

    cluster.wait_for("gang", "its headless Service deleted", service_gone)
    assert [p.metadata.name for p in cluster.pods("gang")] == ["gang-0"]  # kept for its logs


# --- Rule 3a: FAILURE ----------------------------------------------------------------------------


def test_rule_3a_pod_creation_failed_over_quota(cluster: Cluster) -> None:
    cluster.core.create_namespaced_resource_quota(
        cluster.namespace, {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}})
    cluster.wait_for("quota", "quota status",
                     lambda: cluster.core.read_namespaced_resource_quota(
                         "one-pod", cluster.namespace).status.hard)
    cluster.create_job("over", replicas=2)
    status = cluster.wait_for_state("over", "FAILURE", "PodCreationFailed")
    assert "exceeded quota" in status["message"]


def test_rule_3a_image_pulling_then_image_pull_failed(cluster: Cluster) -> None:
    cluster.create_job("noimage", annotations={"ucloud.dk/test-image-pull-fail": "true"})
    cluster.wait_for_state("noimage", "IN_QUEUE", "ImagePulling")
    status = cluster.wait_for_state("noimage", "FAILURE", "ImagePullFailed",
                                    timeout=IMAGE_PULL_GRACE + 30)
    assert "ErrImagePull" in status["message"]


def test_rule_3a_invalid_image_name_fails_at_once(cluster: Cluster) -> None:
    cluster.create_job("badname", annotations={"ucloud.dk/test-stay-pending": "true"})
    cluster.wait_for_pods("badname", 1)
    cluster.patch_pod_status("badname-0", waiting("InvalidImageName", "couldn't parse image"))
    cluster.wait_for_state("badname", "FAILURE", "ImagePullFailed")


def waiting(reason: str, message: str) -> dict[str, object]:
    return {"phase": "Pending", "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "containerStatuses": [{
                "name": "main", "image": "busybox", "imageID": "", "ready": False,
                "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}


def test_rule_3a_container_creating_then_container_create_failed(cluster: Cluster) -> None:
    cluster.create_job("nosecret", annotations={"ucloud.dk/test-stay-pending": "true"})
    cluster.wait_for_pods("nosecret", 1)
    cluster.patch_pod_status("nosecret-0", waiting("CreateContainerConfigError",
                                                   'secret "s" not found'))
    cluster.wait_for_state("nosecret", "IN_QUEUE", "ContainerCreating")
    status = cluster.wait_for_state("nosecret", "FAILURE", "ContainerCreateFailed",
                                    timeout=IMAGE_PULL_GRACE + 30)
    assert 'secret "s" not found' in status["message"]


def test_rule_3a_evicted(cluster: Cluster) -> None:
    cluster.create_job("evicted", replicas=2, annotations={"ucloud.dk/test-evict": "true",
                                                           EXIT_AFTER: "1s"})
    status = cluster.wait_for_state("evicted", "FAILURE", "Evicted")
    assert updates(status)[-1] == "FAILURE"


def test_rule_3a_node_lost(cluster: Cluster) -> None:
    cluster.create_job("lost", annotations={"ucloud.dk/test-node-lost": "true", EXIT_AFTER: "1s"})
    cluster.wait_for_state("lost", "FAILURE", "NodeLost")


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
        self.cluster.core.create_node({
            "metadata": {"name": self.name, "labels": labels,
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        })
        self.cluster.wait_for(self.name, f"node {self.name} Ready", lambda: self.ready() == "True")

    def ready(self) -> str | None:
        conditions = self.cluster.core.read_node(self.name).status.conditions or []
        return next((c.status for c in conditions if c.type == "Ready"), None)

    def stop_reporting(self) -> float:
        """Hold the node lost, from now on; when, in seconds since the epoch."""
        self._hold_lost()
        lost_at = time.time()
        self.cluster.core.patch_node_status(self.name, {"status": {"conditions": [{
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
            "lastHeartbeatTime": rfc3339(lost_at - 40), "lastTransitionTime": rfc3339(lost_at),
        }]}})
        taint = "node.kubernetes.io/unreachable"
        self.cluster.core.patch_node(self.name, {"spec": {"taints": [
            {"key": taint, "effect": "NoSchedule"},
            {"key": taint, "effect": "NoExecute", "timeAdded": rfc3339(lost_at)},
        ]}})
        return lost_at

    def _hold_lost(self) -> None:
        self.admission.create_validating_admission_policy({
            "metadata": {"name": self.name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                    "resources": ["nodes/status"]}]},
                "matchConditions": [{"name": "this-node",
                                     "expression": f"object.metadata.name == '{self.name}'"}],
                "validations": [{
                    "expression": "!object.status.conditions.exists(c, c.type == 'Ready' "
                                  "&& c.status == 'True')",
                    "message": "the test holds this node lost"}],
            },
        })
        self.admission.create_validating_admission_policy_binding({
            "metadata": {"name": self.name},
            "spec": {"policyName": self.name, "validationActions": ["Deny"]},
        })

        def refuses_ready() -> bool:  # the policy is in force once a dry run of kwok's write fails
            try:
                self.cluster.core.patch_node_status(
                    self.name, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                    dry_run="All")
            except ApiException as error:
                return "holds this node lost" in str(error.body)
            return False

        self.cluster.wait_for(self.name, "the policy holding the node lost", refuses_ready)

    def delete(self) -> None:
        for delete in (lambda: self.cluster.core.delete_node(self.name),
                       lambda: self.admission.delete_validating_admission_policy_binding(self.name),
                       lambda: self.admission.delete_validating_admission_policy(self.name)):
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
        stays = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                  "effect": "NoExecute", "tolerationSeconds": 3600}]
        spec = {"containers": [{"name": "main", "image": "busybox"}], "nodeName": node.name,
                "tolerations": stays}
        cluster.create_job("stranded", pod_spec=spec)
        cluster.wait_for_state("stranded", "RUNNING", "AllReplicasRunning")
        node.stop_reporting()
        status = cluster.wait_for_state("stranded", "FAILURE", "NodeLost",
                                        timeout=NODE_LOST_GRACE + 30)
        match = re.fullmatch(
            rf"replica 0 \(stranded-0\): its node {node.name} stopped reporting (\d+)s ago "
            rf"\(Ready=Unknown\)", status["message"])
        assert match, status["message"]
        assert int(match.group(1)) >= NODE_LOST_GRACE  # it waited for the grace
        assert cluster.wait_for_event("stranded", "NodeLost").type == "Warning"


def test_rule_3a_kubelet_rejected(cluster: Cluster) -> None:
    cluster.create_job("rejected", annotations={"ucloud.dk/test-kubelet-reject": "OutOfcpu"})
    status = cluster.wait_for_state("rejected", "FAILURE", "KubeletRejected")
    assert "OutOfcpu" in status["message"]


def test_rule_3a_pod_lost_when_someone_deletes_a_replica(cluster: Cluster) -> None:
    cluster.create_job("victim", replicas=2)
    cluster.wait_for_state("victim", "RUNNING")
    cluster.core.delete_namespaced_pod("victim-1", cluster.namespace)
    status = cluster.wait_for_state("victim", "FAILURE", "PodLost")
    assert "replica 1" in status["message"]
    assert all(p.metadata.name != "victim-1" or p.metadata.deletion_timestamp
               for p in cluster.pods("victim"))


def test_rule_3a_pod_lost_when_a_pending_replica_is_deleted_at_once(cluster: Cluster) -> None:
    # An unscheduled pod is deleted without a grace period: its watch sends DELETED alone, with
    # no update carrying a deletionTimestamp before it.
    nowhere = {"containers": [{"name": "main", "image": "busybox"}],
               "nodeSelector": {"kubernetes.io/hostname": "nowhere"}}
    cluster.create_job("stray", replicas=2, pod_spec=nowhere)
    cluster.wait_for("stray", "both replicas recorded",
                     lambda: len(cluster.status("stray").get("replicaStatuses") or []) == 2)
    cluster.core.delete_namespaced_pod("stray-0", cluster.namespace)
    status = cluster.wait_for_state("stray", "FAILURE", "PodLost")
    assert "replica 0" in status["message"]


def test_rule_3a_template_not_allowed(cluster: Cluster) -> None:
    privileged = {"containers": [{"name": "main", "image": "busybox",
                                  "securityContext": {"privileged": True}}]}
    cluster.create_job("root", pod_spec=privileged)
    status = cluster.wait_for_state("root", "FAILURE", "TemplateNotAllowed")
    assert "privileged" in status["message"]
    assert cluster.pods("root") == []


# --- Rule 3b: EXPIRED ----------------------------------------------------------------------------


def test_rule_3b_deadline_exceeded(cluster: Cluster) -> None:
    cluster.create_job("timed", deadline=2)
    running = cluster.wait_for_state("timed", "RUNNING")
    assert running["expiresAt"]
    status = cluster.wait_for_state("timed", "EXPIRED", "DeadlineExceeded", timeout=30)
    assert updates(status) == ["IN_QUEUE", "RUNNING", "EXPIRED"]
    cluster.wait_for("timed", "pods deleted",
                     lambda: all(p.metadata.deletion_timestamp for p in cluster.pods("timed"))
                     or not cluster.pods("timed"))
    assert cluster.wait_for_event("timed", "DeadlineExceeded").type == "Warning"


def test_rule_3b_raising_the_deadline_moves_expires_at(cluster: Cluster) -> None:
    cluster.create_job("extend", deadline=600)
    first = cluster.wait_for_state("extend", "RUNNING")
    cluster.patch_spec("extend", {"activeDeadlineSeconds": 7200})

    def moved() -> dict[str, object] | None:
        status = cluster.status("extend")
        return status if status.get("expiresAt") != first["expiresAt"] else None

    status = cluster.wait_for("extend", "expiresAt to move", moved)
    assert status["state"] == "RUNNING" and status["observedGeneration"] == 2


def test_rule_3b_pod_deadline_exceeded_expires_the_job(cluster: Cluster) -> None:
    cluster.create_job("poddeadline", annotations={"ucloud.dk/test-deadline-exceeded": "true",
                                                   EXIT_AFTER: "1s"})
    cluster.wait_for_state("poddeadline", "EXPIRED", "DeadlineExceeded")


# --- Rule 2: cancel ------------------------------------------------------------------------------


def test_rule_2_cancel_passes_through_canceling_to_success(cluster: Cluster) -> None:
    cluster.create_job("cancelme", replicas=2)
    cluster.wait_for_state("cancelme", "RUNNING")
    cluster.patch_spec("cancelme", {"cancel": True})
    status = cluster.wait_for_state("cancelme", "SUCCESS", "Cancelled")
    assert updates(status) == ["IN_QUEUE", "RUNNING", "CANCELING", "SUCCESS"]
    cluster.wait_for("cancelme", "pods gone", lambda: not cluster.pods("cancelme"))


# --- Rule 1: final is final ----------------------------------------------------------------------


def test_rule_1_final_state_does_not_change_under_later_pod_events(cluster: Cluster) -> None:
    cluster.create_job("final", annotations={EXIT: "0", EXIT_AFTER: "500ms"})
    before = cluster.wait_for_state("final", "SUCCESS", "Completed")
    cluster.core.delete_namespaced_pod("final-0", cluster.namespace)
    cluster.wait_for("final", "pod gone", lambda: not cluster.pods("final"))
    after = cluster.status("final")
    assert (after["state"], after["reason"], after["updates"]) == (
        before["state"], before["reason"], before["updates"])


# --- Deletion ------------------------------------------------------------------------------------


def test_deleting_a_job_garbage_collects_its_pods_and_service(cluster: Cluster) -> None:
    cluster.create_job("doomed", replicas=2)
    cluster.wait_for_state("doomed", "RUNNING")
    cluster.delete_job("doomed")

    def collected() -> bool:
        services = cluster.core.list_namespaced_service(cluster.namespace).items
        return not cluster.pods("doomed") and not services

    cluster.wait_for("doomed", "pods and Service collected", collected, timeout=60)


def test_kubectl_wait_for_finished_condition_works(cluster: Cluster, kubectl_bin: str,
                                                   kubeconfig: str) -> None:
    cluster.create_job("waitme", annotations={EXIT: "0", EXIT_AFTER: "1s"})
    result = kubectl(kubectl_bin, kubeconfig, "wait", "-n", cluster.namespace,
                     "--for=condition=Finished", "ujob/waitme", "--timeout=60s", check=False)
    assert result.returncode == 0, result.stderr + cluster.evidence("waitme")


def test_events_carry_the_reason_and_warnings_for_failure(cluster: Cluster) -> None:
    cluster.create_job("warned", annotations={"ucloud.dk/test-evict": "true", EXIT_AFTER: "1s"})
    cluster.wait_for_state("warned", "FAILURE", "Evicted")
    def three_events() -> list[client.CoreV1Event] | None:
        found = cluster.events("warned")
        return found if len(found) >= 3 else None

    events = {e.reason: e for e in cluster.wait_for("warned", "3 events", three_events)}
    assert events["Evicted"].type == "Warning"
    assert events["WaitingForReplicas"].type == "Normal"
    assert isinstance(events["Evicted"], client.CoreV1Event)
