"""Reading pods into replica summaries: every documented field, and totality on any JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ucloud_operator.replicas import observe

from .builders import JOB_UID, pod, shaped_like

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
POD_LIKE = shaped_like(
    "metadata",
    "spec",
    "status",
    "phase",
    "reason",
    "containerStatuses",
    "conditions",
    "state",
    "terminated",
    "waiting",
    "exitCode",
    "signal",
    "labels",
    "ownerReferences",
    "deletionTimestamp",
    "startTime",
    "nodeName",
    "type",
    "controller",
    "uid",
)


@settings(max_examples=2000)
@given(JSON)
def test_observe_never_raises_on_arbitrary_json(body: Any) -> None:
    observe(body if isinstance(body, dict) else {"metadata": body})


@settings(max_examples=2000)
@given(POD_LIKE)
def test_observe_never_raises_on_pod_shaped_garbage(body: Any) -> None:
    observe(body if isinstance(body, dict) else {"status": body})


def test_reads_identity_labels_and_owner() -> None:
    summary = pod(2).observe()
    assert (summary.name, summary.namespace, summary.job_name, summary.rank) == (
        "sim-2",
        "default",
        "sim",
        2,
    )
    assert summary.owner_uid == JOB_UID


def test_a_rank_label_that_is_not_a_number_names_no_rank() -> None:
    body = pod(0).build()
    body["metadata"]["labels"]["ucloud.dk/rank"] = "-1"
    assert observe(body).rank is None


def test_running_and_deleting() -> None:
    assert pod(0).running().observe().running
    assert not pod(0).running().deleting().observe().running


def test_termination_prefers_the_failing_container() -> None:
    body = pod(0).terminated(0).build()
    body["status"]["phase"] = "Failed"
    body["status"]["containerStatuses"].append(
        {"name": "side", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
    )
    summary = observe(body)
    assert summary.termination is not None
    assert (summary.termination.exit_code, summary.termination.reason) == (137, "OOMKilled")
    assert summary.terminated


def test_a_failed_pod_without_terminated_containers_did_not_terminate_on_its_own() -> None:
    summary = pod(0).rejected().observe()
    assert summary.phase == "Failed" and not summary.terminated


def test_waiting_reason_of_init_containers_comes_first() -> None:
    body = pod(0).waiting("ContainerCreating").build()
    body["status"]["initContainerStatuses"] = [
        {"name": "init", "state": {"waiting": {"reason": "ErrImagePull"}}}
    ]
    assert observe(body).waiting_reason == "ErrImagePull"


def test_unschedulable_message_and_disruption() -> None:
    assert pod(0).unschedulable("no room").observe().unschedulable == "no room"
    assert pod(0).disrupted().observe().disrupted
    assert pod(0).running().observe().disruption_reason is None


def test_the_disruption_reason_tells_the_taint_managers_eviction_from_the_others() -> None:
    evicted = pod(0).disrupted("DeletionByTaintManager").observe()
    assert (evicted.disrupted, evicted.disruption_reason) == (True, "DeletionByTaintManager")
    assert pod(0).disrupted().observe().disruption_reason == "PreemptionByScheduler"
    unnamed = pod(0).disrupted()
    del unnamed.status["conditions"][0]["reason"]
    assert (unnamed.observe().disrupted, unnamed.observe().disruption_reason) == (True, None)


def test_start_time_falls_back_to_creation() -> None:
    body = pod(0).build()
    del body["status"]["startTime"]
    assert observe(body).started_at is not None
