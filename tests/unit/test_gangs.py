"""Gang admission: the version chosen from discovery, the PodGroup and the pods that name it,
what the scheduler's verdict on a group makes of a queued job, the group informer, and what the
operator does at start in each mode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from ucloud_operator.children import build_pod_group, build_replica_pod
from ucloud_operator.gangs import (
    GangAdmissionUnavailable,
    GangPlacement,
    placement_of,
    resolve,
    served_version,
)
from ucloud_operator.handlers import gang_admission
from ucloud_operator.informer import GangIndex, GangInformer, JobKey
from ucloud_operator.kube import Forbidden
from ucloud_operator.metrics import REGISTRY
from ucloud_operator.models import JOB_NAME_LABEL, JobState

from .builders import JOB_UID, job, pod, queued, run
from .fakes import ScriptedApi, event, page, run_informer_until_drained

# Discovery of scheduling.k8s.io as each version serves it with the Workload API switched on
# (seen on the local control planes: kubectl api-resources --api-group=scheduling.k8s.io).
SERVED_1_37 = {"v1": ["priorityclasses"], "v1beta1": ["podgroups", "podgroups/status", "workloads"]}
SERVED_1_36 = {
    "v1": ["priorityclasses"],
    "v1alpha2": ["podgroups", "podgroups/status", "workloads"],
}
SERVED_OFF = {"v1": ["priorityclasses"]}

# The scheduler's conditions, as written by kube-scheduler 1.37.2 and 1.36.3 for a gang of two
# that cannot both fit.
UNFIT_1_37 = {
    "type": "PodGroupInitiallyScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "minCount (2) cannot be satisfied: 1 scheduled, 0 remaining",
}
UNFIT_1_36 = {
    "type": "PodGroupScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "pod group is unschedulable",
}


def group_body(name: str = "sim", *conditions: dict[str, str], owner: str = JOB_UID) -> Any:
    return {
        "apiVersion": "scheduling.k8s.io/v1beta1",
        "kind": "PodGroup",
        "metadata": {
            "name": name,
            "namespace": "default",
            "resourceVersion": "1",
            "labels": {JOB_NAME_LABEL: name},
            "ownerReferences": [{"controller": True, "uid": owner, "kind": "UCloudJob"}],
        },
        "spec": {"schedulingPolicy": {"gang": {"minCount": 2}}},
        "status": {"conditions": list(conditions)},
    }


# --- which version ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "version"),
    [(SERVED_1_37, "v1beta1"), (SERVED_1_36, "v1alpha2"), (SERVED_OFF, None), ({}, None)],
)
def test_the_version_is_the_one_discovery_shows_serving_podgroups(
    served: dict[str, list[str]], version: str | None
) -> None:
    assert served_version(served) == version


def test_a_version_served_without_podgroups_is_not_used() -> None:
    # 1.36 knows scheduling.k8s.io/v1beta1 for PriorityClasses only.
    assert served_version({"v1beta1": ["priorityclasses"], "v1alpha2": ["podgroups"]}) == "v1alpha2"


def test_the_modes() -> None:
    assert resolve("auto", "v1beta1") == "v1beta1"
    assert resolve("auto", None) is None
    assert resolve("on", "v1alpha2") == "v1alpha2"
    assert resolve("off", "v1beta1") is None
    with pytest.raises(GangAdmissionUnavailable, match="GenericWorkload") as refused:
        resolve("on", None)
    # The message says what to switch on for each version.
    assert "scheduling.k8s.io/v1beta1=true" in str(refused.value)
    assert "scheduling.k8s.io/v1alpha2=true" in str(refused.value)


class Discovery:
    def __init__(self, served: dict[str, list[str]]) -> None:
        self.served = served
        self.asked = 0

    async def discover(self, group: str) -> dict[str, list[str]]:
        assert group == "scheduling.k8s.io"
        self.asked += 1
        return self.served


def gauge(mode: str, version: str) -> float | None:
    return REGISTRY.get_sample_value("ucloud_gang_admission", {"mode": mode, "version": version})


@pytest.mark.parametrize(
    ("mode", "served", "version", "said"),
    [
        ("auto", SERVED_1_37, "v1beta1", "gang admission: on (--gang-admission=auto)"),
        ("auto", SERVED_1_36, "v1alpha2", "PodGroup of scheduling.k8s.io/v1alpha2"),
        ("auto", SERVED_OFF, None, "gang admission: off (--gang-admission=auto)"),
        ("on", SERVED_1_36, "v1alpha2", "gang admission: on (--gang-admission=on)"),
        ("off", SERVED_1_37, None, "gang admission: off (--gang-admission=off)"),
    ],
)
def test_the_operator_says_at_start_which_it_uses(
    mode: str,
    served: dict[str, list[str]],
    version: str | None,
    said: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Discovery(served)
    with caplog.at_level(logging.INFO):
        assert asyncio.run(gang_admission(api, mode)) == version  # type: ignore[arg-type]
    assert said in caplog.text
    assert gauge(mode, version or "") == (1.0 if version else 0.0)
    assert api.asked == (0 if mode == "off" else 1)


def test_on_where_the_api_is_not_served_stops_the_operator(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(kopf.PermanentError, match="serves no podgroups"):
        asyncio.run(gang_admission(Discovery(SERVED_OFF), "on"))  # type: ignore[arg-type]
    assert "--gang-admission=on, but the API server serves no podgroups" in caplog.text


# --- the objects -------------------------------------------------------------------------------


def test_the_podgroup_is_owned_by_the_job_and_asks_for_every_replica() -> None:
    spec = job(replicas=4).spec
    assert spec is not None
    group = build_pod_group("ns", "sim", JOB_UID, spec, "v1alpha2")
    assert group["apiVersion"] == "scheduling.k8s.io/v1alpha2"
    assert group["metadata"]["name"] == "sim"
    assert group["metadata"]["labels"] == {JOB_NAME_LABEL: "sim"}
    (owner,) = group["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"]) == (JOB_UID, True)
    assert group["spec"] == {"schedulingPolicy": {"gang": {"minCount": 4}}}


def test_the_podgroup_carries_the_pods_priority_class_where_1_37_needs_it() -> None:
    template = {"priorityClassName": "batch", "containers": [{"name": "m", "image": "busybox"}]}
    spec = job(replicas=2, template_spec=template).spec
    assert spec is not None
    beta = build_pod_group("ns", "sim", JOB_UID, spec, "v1beta1")
    alpha = build_pod_group("ns", "sim", JOB_UID, spec, "v1alpha2")
    assert beta["spec"]["priorityClassName"] == "batch"
    assert "priorityClassName" not in alpha["spec"]  # 1.36 forbids it without another gate


def test_a_replica_names_its_group_over_one_in_the_template() -> None:
    template = {
        "schedulingGroup": {"podGroupName": "theirs"},
        "containers": [{"name": "m", "image": "busybox"}],
    }
    spec = job(replicas=2, template_spec=template).spec
    assert spec is not None
    ours = build_replica_pod("ns", "sim", JOB_UID, spec, 1, pod_group="sim")
    assert ours["spec"]["schedulingGroup"] == {"podGroupName": "sim"}
    kept = build_replica_pod("ns", "sim", JOB_UID, spec, 1)
    assert kept["spec"]["schedulingGroup"] == {"podGroupName": "theirs"}


# --- the verdict -------------------------------------------------------------------------------


@pytest.mark.parametrize("condition", [UNFIT_1_37, UNFIT_1_36])
def test_both_condition_names_are_read(condition: dict[str, str]) -> None:
    placement = placement_of(group_body("sim", condition))
    assert placement == GangPlacement(JOB_UID, False, "Unschedulable", condition["message"])


def test_a_group_placed_or_not_yet_judged() -> None:
    placed = {"type": "PodGroupScheduled", "status": "True", "reason": "Scheduled", "message": ""}
    assert placement_of(group_body("sim", placed)).scheduled is True
    assert placement_of(group_body("sim")).scheduled is None
    other = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    assert placement_of(group_body("sim", other)).scheduled is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": []},
        {"status": {"conditions": "no"}},
        {"metadata": 3, "status": None},
        {"status": {"conditions": [None, 1, {"type": "PodGroupScheduled"}]}},
    ],
)
def test_a_malformed_group_body_reads_as_no_verdict(body: Any) -> None:
    assert placement_of(body).scheduled in (None, False)


def test_a_gang_that_cannot_be_placed_is_queued_unschedulable_with_the_groups_message() -> None:
    the_job = queued(job(replicas=3))
    verdict = placement_of(group_body("sim", UNFIT_1_37))
    decision = run(the_job, pod(0), pod(1), pod(2).unschedulable(), gang=verdict)
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.status.reason == "Unschedulable"
    assert decision.status.message == UNFIT_1_37["message"]
    assert decision.status.running_replicas == 0
    assert decision.create_ranks == ()


def test_a_scheduler_error_on_the_group_is_named_in_the_message() -> None:
    the_job = queued(job(replicas=2))
    verdict = GangPlacement(JOB_UID, False, "SchedulerError", "pods differ in priority")
    decision = run(the_job, pod(0), pod(1), gang=verdict)
    assert decision.status.reason == "Unschedulable"
    assert decision.status.message == "SchedulerError: pods differ in priority"


def test_once_placed_the_replicas_own_reasons_tell_the_wait() -> None:
    the_job = queued(job(replicas=2))
    verdict = GangPlacement(JOB_UID, True, "Scheduled", "")
    decision = run(
        the_job, pod(0).running(), pod(1).waiting("ContainerCreating").on_node(), gang=verdict
    )
    assert decision.status.reason == "ContainerCreating"


def test_a_group_left_by_an_earlier_job_of_the_same_name_is_ignored() -> None:
    the_job = queued(job(replicas=2))
    stale = GangPlacement("an-older-uid", False, "Unschedulable", "from before")
    decision = run(the_job, pod(0), pod(1), gang=stale)
    assert decision.status.reason == "WaitingForReplicas"


def test_a_gang_waiting_for_a_verdict_is_not_failed_nor_running() -> None:
    the_job = queued(job(replicas=2))
    decision = run(the_job, pod(0), pod(1), gang=GangPlacement(JOB_UID))
    assert (decision.status.state, decision.status.reason) == (
        JobState.IN_QUEUE,
        "WaitingForReplicas",
    )


# --- the informer ------------------------------------------------------------------------------


async def test_the_group_informer_keeps_each_verdict_and_reports_only_changes() -> None:
    api = ScriptedApi(
        lists=[page([group_body("a"), group_body("b")], "10")],
        watches=[
            [
                event("MODIFIED", group_body("a", UNFIT_1_37)),
                event("MODIFIED", group_body("a", UNFIT_1_37)),  # the same verdict: no news
                event("DELETED", group_body("b")),
                event("ADDED", {"metadata": {"name": "nameless"}}),  # no namespace: skipped
            ]
        ],
    )
    index = GangIndex()
    changed: list[JobKey] = []
    informer = GangInformer(api, index, "default", "v1beta1", changed.append, first_retry_delay=0)
    await run_informer_until_drained(api, informer)
    assert api.paths == {"/apis/scheduling.k8s.io/v1beta1/namespaces/default/podgroups"}
    assert api.asked[0][1]["labelSelector"] == JOB_NAME_LABEL
    assert changed == [("default", "a"), ("default", "b"), ("default", "a"), ("default", "b")]
    placement = index.get(("default", "a"))
    assert placement is not None and placement.scheduled is False
    assert index.get(("default", "b")) is None
    assert len(index) == 1


async def test_without_the_right_to_read_groups_the_informer_says_so_and_holds_nothing_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusal = Forbidden('podgroups.scheduling.k8s.io is forbidden: User "op" cannot list')
    api = ScriptedApi(lists=[refusal], watches=[])
    informer = GangInformer(
        api, GangIndex(), None, "v1beta1", print, first_retry_delay=0, forbidden_retry_delay=0
    )
    await run_informer_until_drained(api, informer)
    assert informer.synced.is_set()  # the controller does not wait for it
    assert informer.forbidden is not None
    assert "running without the scheduler's verdict on gangs" in caplog.text
