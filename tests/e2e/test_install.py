"""The installed operator does its job: probes answer, a job runs to SUCCESS, cancel works,
and every step shows in the status history, the Events and /metrics.

Each API call the chart's RBAC grants is exercised: pods list/watch/create/delete, services
create and delete (two-replica jobs), events create, ucloudjobs list/watch, ucloudjobs/status
patch, and ucloudjobs/finalizers update (replica pods carry an ownerReference with
blockOwnerDeletion).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster, busybox, exits, history
from tests.support.operator import Operator
from tests.support.poll import poll
from ucloud_operator.models import API_VERSION, KIND, JobState, Reason

BUSYBOX = "busybox:1.36"
# KWOK: Running, then Succeeded with exit code 0 two seconds later. A real kubelet ignores the
# annotations and runs the command (long enough for both replicas to be Running together).
FINISHES = "sleep 10; exit 0"
RUNS_ON = "sleep 3600"
TRANSITIONS = "ucloud_job_transitions_total"


def replica(command: str) -> dict[str, Any]:
    """A pod spec a real kubelet runs as `command`, in little room, stopped quickly."""
    return {
        **busybox(
            image=BUSYBOX,
            command=["sh", "-c", command],
            resources={"requests": {"cpu": "10m", "memory": "16Mi"}},
        ),
        "terminationGracePeriodSeconds": 1,
    }


def test_readyz_and_healthz(operator: Operator, cluster: Cluster) -> None:
    for path in ("/readyz", "/healthz"):
        assert json.loads(operator.probe(path, timeout=cluster.timeout))["ok"] is True


def test_job_goes_in_queue_running_success(
    cluster: Cluster, operator: Operator, job_name: str
) -> None:
    before = operator.metrics.scrape() if operator.metrics else None
    cluster.create_job(
        job_name, replicas=2, annotations=exits(0, after="2s"), pod_spec=replica(FINISHES)
    )

    status = cluster.wait_for_state(
        job_name, JobState.SUCCESS, Reason.COMPLETED, timeout=cluster.timeout + 30
    )
    assert history(status) == [JobState.IN_QUEUE, JobState.RUNNING, JobState.SUCCESS], (
        cluster.evidence(job_name)
    )
    assert status["replicas"] == 2
    assert status["startedAt"] and status["finishedAt"]
    finished = {c["type"]: c for c in status["conditions"]}["Finished"]
    assert finished["status"] == "True" and finished["reason"] == JobState.SUCCESS

    # services delete: the headless Service of a gang goes when the job ends.
    cluster.wait_for(
        job_name, "the headless Service deleted", lambda: not cluster.services(job_name)
    )

    # events create: one Event per state change, the last one for RUNNING -> SUCCESS.
    def final_events() -> list[Any]:
        return [
            e
            for e in cluster.events(job_name, reason=Reason.COMPLETED)
            if e.message.startswith("RUNNING -> SUCCESS")
        ]

    events = cluster.wait_for(job_name, "an Event for RUNNING -> SUCCESS", final_events)
    assert events[0].type == "Normal"

    if operator.metrics is None or before is None:
        return
    metrics = operator.metrics
    expected = [
        ("new", JobState.IN_QUEUE, None),
        (JobState.IN_QUEUE, JobState.RUNNING, Reason.ALL_REPLICAS_RUNNING),
        (JobState.RUNNING, JobState.SUCCESS, Reason.COMPLETED),
    ]

    seen: list[dict[str, float]] = []

    def counted() -> dict[str, float] | None:
        after = metrics.scrape()
        deltas = {}
        for old, new, reason in expected:
            labels = {"from_state": old, "to_state": new} | ({"reason": reason} if reason else {})
            deltas[f"{old}->{new}"] = after.value(TRANSITIONS, **labels) - before.value(
                TRANSITIONS, **labels
            )
        seen.append(deltas)
        return deltas if all(d >= 1 for d in deltas.values()) else None

    poll(
        f"{TRANSITIONS} for new->IN_QUEUE->RUNNING->SUCCESS",
        counted,
        lambda: f"last counts: {seen[-1:]}\n{cluster.evidence(job_name)}",
        cluster.timeout,
    )
    samples = metrics.scrape()
    assert samples.value("ucloud_jobs", state=JobState.SUCCESS) >= 1
    assert samples.value("ucloud_api_requests_total", verb="create", resource="pods") >= 2


def test_cancel_deletes_the_replicas_and_the_service(cluster: Cluster, job_name: str) -> None:
    cluster.create_job(job_name, replicas=2, pod_spec=replica(RUNS_ON))
    cluster.wait_for_state(job_name, JobState.RUNNING, timeout=cluster.timeout + 30)
    for pod in cluster.pods(job_name):
        owner = pod.metadata.owner_references[0]
        assert owner.kind == KIND and owner.controller and owner.block_owner_deletion
    # services create: a job with more than one replica has a headless Service of its name.
    (service,) = cluster.services(job_name)
    assert service.spec.cluster_ip == "None"

    cluster.patch_spec(job_name, {"cancel": True})
    status = cluster.wait_for_state(job_name, JobState.SUCCESS, Reason.CANCELLED)
    assert history(status)[-2:] == [JobState.CANCELING, JobState.SUCCESS], cluster.evidence(
        job_name
    )
    cluster.wait_for(
        job_name,
        "the replica pods and the Service deleted",
        lambda: not cluster.pods(job_name) and not cluster.services(job_name),
    )


def test_admission_policy_refuses_a_privileged_template_at_apply_time(cluster: Cluster) -> None:
    # The chart's ValidatingAdmissionPolicy answers before the operator ever sees the job.
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "root"},
        "spec": {"template": {"spec": busybox(securityContext={"privileged": True})}},
    }
    with pytest.raises(ApiException) as refused:
        cluster.create(body)
    assert refused.value.status == 403
    assert "privileged containers are not allowed" in refused.value.body
