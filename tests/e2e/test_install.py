"""The installed operator does its job: probes answer, a job runs to SUCCESS, cancel works,
and every step shows in the status history, the Events and /metrics.

Each API call the chart's RBAC grants is exercised: pods list/watch/create/delete, services
create and delete (two-replica jobs), events create, ucloudjobs list/watch, ucloudjobs/status
patch, and ucloudjobs/finalizers update (replica pods carry an ownerReference with
blockOwnerDeletion).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from .conftest import TIMEOUT, Jobs, Metrics, http_get, poll

# KWOK: Running, then Succeeded with exit code 0 two seconds later. A real kubelet ignores the
# annotations and runs the command (long enough for both replicas to be Running together).
EXIT_0_AFTER_2S = {"ucloud.dk/test-exit-code": "0", "ucloud.dk/test-exit-after": "2s"}
FINISHES = "sleep 10; exit 0"
RUNS_ON = "sleep 3600"
TRANSITIONS = "ucloud_job_transitions_total"


def states(status: dict[str, object]) -> list[str]:
    """The state history without repeats (a reason change within a state is not a transition)."""
    seen: list[str] = []
    for update in status.get("updates") or []:  # type: ignore[attr-defined]
        if not seen or seen[-1] != update["state"]:
            seen.append(update["state"])
    return seen


def test_readyz_and_healthz(health_url: str) -> None:
    for path in ("/readyz", "/healthz"):
        poll(f"GET {path} == 200", lambda p=path: http_get(health_url + p)[0] == 200,
             lambda p=path: f"last answer: {http_get(health_url + p)}")


def test_job_goes_in_queue_running_success(jobs: Jobs, job_name: str,
                                           metrics: Metrics | None) -> None:
    before = metrics.scrape() if metrics else {}
    jobs.create(job_name, replicas=2, annotations=EXIT_0_AFTER_2S, command=FINISHES)

    status = jobs.wait_for_state(job_name, "SUCCESS", "Completed", timeout=TIMEOUT + 30)
    assert states(status) == ["IN_QUEUE", "RUNNING", "SUCCESS"], jobs.evidence(job_name)
    assert status["replicas"] == 2
    assert status["startedAt"] and status["finishedAt"]
    finished = {c["type"]: c for c in status["conditions"]}["Finished"]
    assert finished["status"] == "True" and finished["reason"] == "SUCCESS"

    # services delete: the headless Service of a gang goes when the job ends.
    poll("the headless Service deleted", lambda: not jobs.services(job_name),
         lambda: jobs.evidence(job_name))
    # events create: one Event per state change, the last one for RUNNING -> SUCCESS.
    def final_events() -> list[Any]:
        return [e for e in jobs.events(job_name)
                if e.reason == "Completed" and e.message.startswith("RUNNING -> SUCCESS")]

    events = poll("an Event for RUNNING -> SUCCESS", final_events, lambda: jobs.evidence(job_name))
    assert events[0].type == "Normal"

    if metrics is None:
        return
    expected = [("new", "IN_QUEUE", None), ("IN_QUEUE", "RUNNING", "AllReplicasRunning"),
                ("RUNNING", "SUCCESS", "Completed")]

    def counted() -> dict[str, float] | None:
        after = metrics.scrape()
        deltas = {}
        for old, new, reason in expected:
            labels = {"from_state": old, "to_state": new} | ({"reason": reason} if reason else {})
            deltas[f"{old}->{new}"] = (Metrics.value(after, TRANSITIONS, **labels)
                                       - Metrics.value(before, TRANSITIONS, **labels))
        return deltas if all(d >= 1 for d in deltas.values()) else None

    poll(f"{TRANSITIONS} for new->IN_QUEUE->RUNNING->SUCCESS", counted,
         lambda: "\n".join(f"{k}: {v}" for k, v in metrics.scrape().items()
                           if k[0].startswith("ucloud_job_transitions")))
    samples = metrics.scrape()
    assert Metrics.value(samples, "ucloud_jobs", state="SUCCESS") >= 1
    assert Metrics.value(samples, "ucloud_api_requests_total", verb="create",
                         resource="pods") >= 2


def test_cancel_deletes_the_replicas_and_the_service(jobs: Jobs, job_name: str) -> None:
    jobs.create(job_name, replicas=2, annotations={}, command=RUNS_ON)
    jobs.wait_for_state(job_name, "RUNNING", timeout=TIMEOUT + 30)
    for pod in jobs.pods(job_name):
        owner = pod.metadata.owner_references[0]
        assert owner.kind == "UCloudJob" and owner.controller and owner.block_owner_deletion
    # services create: a job with more than one replica has a headless Service of its name.
    (service,) = jobs.services(job_name)
    assert service.spec.cluster_ip == "None"

    jobs.patch_spec(job_name, {"cancel": True})
    status = jobs.wait_for_state(job_name, "SUCCESS", "Cancelled")
    assert states(status)[-2:] == ["CANCELING", "SUCCESS"], jobs.evidence(job_name)
    poll("the replica pods and the Service deleted",
         lambda: not jobs.pods(job_name) and not jobs.services(job_name),
         lambda: jobs.evidence(job_name))


def test_admission_policy_refuses_a_privileged_template_at_apply_time(jobs: Jobs) -> None:
    # The chart's ValidatingAdmissionPolicy answers before the operator ever sees the job.
    privileged = {"containers": [{"name": "main", "image": "busybox",
                                  "securityContext": {"privileged": True}}]}
    body = {"apiVersion": "ucloud.dk/v1", "kind": "UCloudJob", "metadata": {"name": "root"},
            "spec": {"template": {"spec": privileged}}}
    with pytest.raises(ApiException) as refused:
        jobs.custom.create_namespaced_custom_object("ucloud.dk", "v1", jobs.namespace,
                                                    "ucloudjobs", body)
    assert refused.value.status == 403
    assert "privileged containers are not allowed" in refused.value.body
