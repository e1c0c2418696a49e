"""The state rules of docs/api.md, one named test per rule and per reason, in its order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ucloud_operator.jobs import read_job
from ucloud_operator.models import MAX_UPDATES, JobState, Reason, StatusUpdate
from ucloud_operator.nodes import UNREACHABLE_TAINT
from ucloud_operator.replicas import TAINT_EVICTION
from ucloud_operator.rules import Observed, Settings, decide

from .builders import GRACE, NOW, after, in_state, job, node, pod, queued, run

GRACE_S = GRACE.total_seconds()
QUEUED = queued(job())  # a 1-replica job after its first pass: IN_QUEUE, pod 0 created

# --- Rule 1: final is final ------------------------------------------------------------------


def final_job(state: JobState):  # type: ignore[no-untyped-def]
    """A 2-replica job driven into `state` by the rules."""
    queued = in_state(job(replicas=2, deadline=60), JobState.IN_QUEUE)
    running = in_state(queued, JobState.RUNNING, pod(0).running(), pod(1).running())
    if state is JobState.SUCCESS:
        return in_state(running, state, pod(0).terminated(0), pod(1).running())
    if state is JobState.FAILURE:
        return in_state(running, state, pod(0).evicted(), pod(1).running())
    return in_state(running, state, pod(0).running(), pod(1).running(),
                    now=NOW + timedelta(seconds=61))


@pytest.mark.parametrize("state", [JobState.SUCCESS, JobState.FAILURE, JobState.EXPIRED])
def test_rule_1_final_state_never_changes_under_later_pod_events(state: JobState) -> None:
    final = final_job(state)
    for later in ([pod(0).running(), pod(1).running()], [pod(0).evicted()], [],
                  [pod(1).terminated(3)]):
        decision = run(final, *later, now=NOW + timedelta(hours=2))
        assert decision.status.state is state
        assert decision.status.reason == final.status.reason
        assert decision.event is None
        assert decision.create_ranks == ()


def test_rule_1_a_deadline_edited_after_the_end_does_not_move_expires_at() -> None:
    final = final_job(JobState.EXPIRED)
    edited = job(replicas=2, deadline=7200, status=final.status, generation=2)
    decision = run(edited, now=NOW + timedelta(hours=1))
    assert decision.status.expires_at == final.status.expires_at
    assert decision.status.state is JobState.EXPIRED


def test_rule_1_final_state_deletes_leftover_pods() -> None:
    final = final_job(JobState.SUCCESS)
    decision = run(final, pod(0).terminated(0), pod(1).running())
    assert decision.delete_pods == ("sim-1",)


def test_rule_1_final_state_marks_the_replicas_it_deletes_in_the_same_write() -> None:
    final = final_job(JobState.SUCCESS)
    phases = [(r.rank, r.phase, r.exit_code) for r in final.status.replica_statuses]
    assert phases == [(0, "Succeeded", 0), (1, "Deleted", None)]
    assert final.status.running_replicas == 0


@pytest.mark.parametrize("state", [JobState.SUCCESS, JobState.FAILURE, JobState.EXPIRED])
def test_a_gang_entering_a_final_state_deletes_its_service_once(state: JobState) -> None:
    queued_gang = in_state(job(replicas=2, deadline=60), JobState.IN_QUEUE)
    running = in_state(queued_gang, JobState.RUNNING, pod(0).running(), pod(1).running())
    ends = {JobState.SUCCESS: ([pod(0).terminated(0), pod(1).running()], NOW),
            JobState.FAILURE: ([pod(0).evicted(), pod(1).running()], NOW),
            JobState.EXPIRED: ([pod(0).running(), pod(1).running()], NOW + timedelta(hours=1))}
    pods, now = ends[state]
    entering = run(running, *pods, now=now)
    assert entering.status.state is state
    assert entering.delete_gang
    # Until the final state is written the pass is repeated, and so is the delete; after, never.
    assert run(running, *pods, now=now).delete_gang
    assert not run(after(running, entering), *pods, now=now).delete_gang
    for earlier in (queued_gang, running):
        assert not run(earlier, pod(0).running(), pod(1).running()).delete_gang


def test_no_service_to_delete_for_one_replica_or_a_gang_that_never_got_pods() -> None:
    single = run(running_job(replicas=1), pod(0).terminated(0))
    assert single.status.state is JobState.SUCCESS
    assert not single.delete_gang
    privileged = {"containers": [{"name": "m", "image": "x",
                                  "securityContext": {"privileged": True}}]}
    refused = in_state(job(replicas=2, template_spec=privileged), JobState.IN_QUEUE)
    decision = run(refused)
    assert decision.status.reason == Reason.TEMPLATE_NOT_ALLOWED
    assert not decision.delete_gang


def test_rule_1_a_replica_the_operator_deleted_stays_deleted_without_a_write() -> None:
    # The SIGKILL of the delete (137) is not news: no patch after the final one.
    final = final_job(JobState.SUCCESS)
    for later in ([pod(0).terminated(0), pod(1).terminated(137, "Error")], [pod(0).terminated(0)]):
        decision = run(final, *later)
        assert not decision.changed
        assert decision.event is None
        assert [r.phase for r in decision.status.replica_statuses] == ["Succeeded", "Deleted"]
        assert len(decision.status.updates) == len(final.status.updates)


# --- Rule 2: cancel ---------------------------------------------------------------------------


def test_rule_2_cancel_enters_canceling_and_deletes_every_replica_pod() -> None:
    running = in_state(job(replicas=2), JobState.IN_QUEUE)
    running = in_state(running, JobState.RUNNING, pod(0).running(), pod(1).running())
    decision = run(job(replicas=2, cancel=True, status=running.status),
                   pod(0).running(), pod(1).running())
    assert decision.status.state is JobState.CANCELING
    assert decision.status.reason == Reason.CANCEL_REQUESTED
    assert set(decision.delete_pods) == {"sim-0", "sim-1"}
    assert decision.event is not None and decision.event.type == "Normal"


def test_rule_2_canceling_ends_in_success_cancelled_when_no_pod_is_left() -> None:
    canceling = in_state(job(cancel=True), JobState.CANCELING)
    decision = run(canceling)
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.reason == Reason.CANCELLED


def test_rule_2_canceling_ends_in_success_when_every_pod_has_terminated() -> None:
    canceling = in_state(job(replicas=2, cancel=True), JobState.CANCELING, pod(0).running())
    decision = run(canceling, pod(0).terminated(143, signal=15), pod(1).terminated(0))
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.reason == Reason.CANCELLED


def test_rule_2_canceling_waits_while_a_pod_is_still_being_deleted() -> None:
    canceling = in_state(job(cancel=True), JobState.CANCELING, pod(0).running())
    decision = run(canceling, pod(0).running().deleting())
    assert decision.status.state is JobState.CANCELING
    assert decision.delete_pods == ()  # already being deleted: no second delete
    assert not decision.changed


def test_rule_2_canceling_is_written_before_success_even_with_no_pod() -> None:
    first = run(job(cancel=True))  # a brand-new job, cancelled before any pod exists
    assert first.status.state is JobState.IN_QUEUE  # every job is queued first
    assert first.create_ranks == ()  # but no pod is created for a cancelled job
    second = run(after(job(cancel=True), first))
    assert second.status.state is JobState.CANCELING
    third = run(after(job(cancel=True), second))
    assert [u.state for u in third.status.updates] == [
        JobState.IN_QUEUE, JobState.CANCELING, JobState.SUCCESS]


def test_rule_2_cancel_beats_a_platform_fault_in_the_same_observation() -> None:
    queued = in_state(job(cancel=False), JobState.IN_QUEUE)
    decision = run(job(cancel=True, status=queued.status), pod(0).evicted())
    assert decision.status.state is JobState.CANCELING


def test_rule_2_canceling_never_expires_or_fails() -> None:
    running = in_state(in_state(job(deadline=10), JobState.IN_QUEUE), JobState.RUNNING,
                       pod(0).running())
    canceling = in_state(job(deadline=10, cancel=True, status=running.status),
                         JobState.CANCELING, pod(0).running())
    decision = run(canceling, pod(0).evicted(), now=NOW + timedelta(hours=1))
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.reason == Reason.CANCELLED


# --- Rule 3a: the platform could not run it: FAILURE -------------------------------------------


def test_rule_3a_pod_creation_failed() -> None:
    decision = run(QUEUED, refused={0: 'pods "sim-0" is forbidden: exceeded quota'})
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.POD_CREATION_FAILED
    assert "exceeded quota" in (decision.status.message or "")
    assert decision.event is not None and decision.event.type == "Warning"


def test_rule_3a_image_pull_failed_after_the_grace() -> None:
    late = pod(0).waiting("ImagePullBackOff", "Back-off pulling image").started(GRACE_S + 1)
    decision = run(QUEUED, late)
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.IMAGE_PULL_FAILED


def test_rule_3a_image_pull_failing_within_the_grace_is_still_queued() -> None:
    early = pod(0).waiting("ErrImagePull", "not found").started(GRACE_S - 30)
    decision = run(QUEUED, early)
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.status.reason == Reason.IMAGE_PULLING
    assert decision.recheck_at == NOW + timedelta(seconds=30)


def test_rule_3a_invalid_image_name_fails_at_once() -> None:
    decision = run(QUEUED, pod(0).waiting("InvalidImageName").started(1))
    assert decision.status.reason == Reason.IMAGE_PULL_FAILED


def test_rule_3a_image_pull_grace_is_a_setting() -> None:
    early = pod(0).waiting("ErrImagePull").started(10)
    decision = run(QUEUED, early, settings=Settings(image_pull_grace=timedelta(seconds=5)))
    assert decision.status.reason == Reason.IMAGE_PULL_FAILED


@pytest.mark.parametrize("waiting", ["CreateContainerConfigError", "CreateContainerError"])
def test_rule_3a_container_create_failed_after_the_grace(waiting: str) -> None:
    decision = run(QUEUED, pod(0).waiting(waiting, 'secret "x" not found').started(GRACE_S))
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.CONTAINER_CREATE_FAILED


def test_rule_3a_container_create_error_within_the_grace_is_container_creating() -> None:
    decision = run(QUEUED, pod(0).waiting("CreateContainerConfigError").started(5))
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.status.reason == Reason.CONTAINER_CREATING


def test_rule_3a_evicted_by_status_reason() -> None:
    decision = run(QUEUED, pod(0).evicted())
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.EVICTED


def test_rule_3a_evicted_by_disruption_target_condition() -> None:
    decision = run(QUEUED, pod(0).disrupted())
    assert decision.status.reason == Reason.EVICTED


def test_rule_3a_node_lost_by_status_reason() -> None:
    decision = run(QUEUED, pod(0).node_lost())
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.NODE_LOST


def test_rule_3a_node_lost_by_phase_unknown() -> None:
    lost = pod(0).running()
    lost.status["phase"] = "Unknown"
    decision = run(QUEUED, lost)
    assert decision.status.reason == Reason.NODE_LOST
    assert decision.status.message == "replica 0 (sim-0): its node node-0 was lost"


# NodeLost as Kubernetes >= 1.36 reports it: the node, not the pod, says so. The pod stays Running.
NODE_GRACE_S = Settings().node_lost_grace.total_seconds()


def test_rule_3a_node_lost_when_its_node_stopped_reporting_past_the_grace() -> None:
    running = running_job(deadline=None, replicas=2)
    lost = node("node-1").ready("Unknown", NODE_GRACE_S + 15)
    decision = run(running, pod(0).running(), pod(1).running().on_node("node-1"),
                   nodes=(node("node-0"), lost))
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.NODE_LOST
    assert decision.status.message == (
        "replica 1 (sim-1): its node node-1 stopped reporting 75s ago (Ready=Unknown)")
    assert set(decision.delete_pods) == {"sim-0", "sim-1"}


def test_rule_3a_a_node_lost_within_the_grace_fails_nothing_and_is_looked_at_again() -> None:
    running = running_job(deadline=None)
    decision = run(running, pod(0).running(), nodes=(node().unreachable(NODE_GRACE_S - 20),))
    assert decision.status.state is JobState.RUNNING
    assert decision.event is None
    assert decision.recheck_at == NOW + timedelta(seconds=20)
    later = run(running, pod(0).running(), nodes=(node().unreachable(NODE_GRACE_S),))
    assert later.status.reason == Reason.NODE_LOST


def test_rule_3a_node_lost_by_a_taint_alone() -> None:
    tainted = node().tainted(UNREACHABLE_TAINT, "NoExecute", NODE_GRACE_S + 1)
    decision = run(running_job(deadline=None), pod(0).running(), nodes=(tainted,))
    assert decision.status.reason == Reason.NODE_LOST
    assert f"({UNREACHABLE_TAINT} taint)" in (decision.status.message or "")


def test_rule_3a_node_lost_grace_is_a_setting() -> None:
    at_once = Settings(node_lost_grace=timedelta(0))
    decision = run(running_job(deadline=None), pod(0).running(),
                   nodes=(node().ready("False", 0, reason="KubeletNotReady"),), settings=at_once)
    assert decision.status.reason == Reason.NODE_LOST
    assert "(Ready=False)" in (decision.status.message or "")


def test_rule_3a_the_taint_managers_eviction_is_node_lost_not_evicted() -> None:
    evicted = pod(0).disrupted(TAINT_EVICTION)
    for nodes in ((), (node().unreachable(10),)):  # without node facts, and within the grace
        decision = run(QUEUED, evicted, nodes=nodes)
        assert decision.status.state is JobState.FAILURE
        assert decision.status.reason == Reason.NODE_LOST
        assert decision.status.message == (
            "replica 0 (sim-0) was evicted from its node node-0, which was lost")


def test_rule_3a_the_taint_managers_eviction_from_a_healthy_node_is_evicted() -> None:
    # A NoExecute taint someone put on a node that still reports (maintenance, a drain tool).
    decision = run(QUEUED, pod(0).disrupted(TAINT_EVICTION), nodes=(node(),))
    assert decision.status.reason == Reason.EVICTED


@pytest.mark.parametrize("reason", ["PreemptionByScheduler", "TerminationByKubelet",
                                    "EvictionByEvictionAPI", "DeletionByPodGC"])
def test_rule_3a_any_other_disruption_is_evicted(reason: str) -> None:
    decision = run(QUEUED, pod(0).disrupted(reason), nodes=(node().unreachable(1),))
    assert decision.status.reason == Reason.EVICTED


def test_rule_3a_a_replica_that_terminated_is_not_lost_with_its_node() -> None:
    running = running_job(deadline=None, replicas=2)
    decision = run(running, pod(0).terminated(0), pod(1).running().on_node("node-1"),
                   nodes=(node("node-0").unreachable(NODE_GRACE_S * 2), node("node-1")))
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.reason == Reason.COMPLETED
    assert decision.delete_pods == ("sim-1",)


def test_rule_3a_an_active_replica_on_a_lost_node_beats_one_that_terminated() -> None:
    # FAILURE beats SUCCESS: replica 0 ended on its own, replica 1 lost its node long ago.
    running = running_job(deadline=None, replicas=2)
    decision = run(running, pod(0).terminated(0), pod(1).running().on_node("node-1"),
                   nodes=(node("node-0"), node("node-1").unreachable(NODE_GRACE_S * 2)))
    assert decision.status.reason == Reason.NODE_LOST
    assert "replica 1 (sim-1)" in (decision.status.message or "")


def test_rule_3a_without_node_facts_a_running_replica_keeps_running() -> None:
    # The operator may not read nodes: only the pods' own signals tell a lost node.
    decision = run(running_job(deadline=None), pod(0).running().not_ready())
    assert decision.status.state is JobState.RUNNING
    assert decision.recheck_at is None


def test_rule_3a_kubelet_rejected_before_any_container_ran() -> None:
    decision = run(QUEUED, pod(0).rejected("OutOfcpu"))
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.KUBELET_REJECTED
    assert "OutOfcpu" in (decision.status.message or "")


def test_rule_3a_pod_lost_when_a_created_pod_vanishes() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)  # records rank 0 as created
    decision = run(queued)
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.POD_LOST
    assert decision.create_ranks == ()  # never re-created


def test_rule_3a_pod_lost_when_someone_else_deletes_a_pod() -> None:
    running = in_state(in_state(job(), JobState.IN_QUEUE), JobState.RUNNING, pod(0).running())
    decision = run(running, pod(0).running().deleting())
    assert decision.status.reason == Reason.POD_LOST


def test_rule_3a_a_created_pod_not_yet_seen_is_not_lost() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    decision = run(queued, creating=(0,))
    assert decision.status.state is JobState.IN_QUEUE


@pytest.mark.parametrize(
    "template_spec",
    [
        {"containers": [{"name": "m", "image": "x", "securityContext": {"privileged": True}}]},
        {"containers": [{"name": "m", "image": "x"}],
         "volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        {"containers": [{"name": "m", "image": "x"}], "hostNetwork": True},
        {"containers": [{"name": "m", "image": "x"}], "hostPID": True},
        {"containers": [{"name": "m", "image": "x"}], "hostIPC": True},
        {"containers": [{"name": "m", "image": "x"}],
         "initContainers": [{"name": "i", "image": "x", "securityContext": {"privileged": True}}]},
    ],
    ids=["privileged", "hostPath", "hostNetwork", "hostPID", "hostIPC", "privileged init"],
)
def test_rule_3a_template_not_allowed(template_spec: dict[str, object]) -> None:
    decision = run(queued(job(template_spec=template_spec)))
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.TEMPLATE_NOT_ALLOWED
    assert decision.create_ranks == ()  # no pod is created


def test_rule_3a_template_policy_is_a_setting() -> None:
    privileged = {"containers": [{"name": "m", "image": "x",
                                  "securityContext": {"privileged": True}}]}
    decision = run(job(template_spec=privileged),
                   settings=Settings(forbid_privileged_templates=False))
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.create_ranks == (0,)


def test_rule_3a_unreadable_spec_fails_with_invalid_spec() -> None:
    broken = read_job({"metadata": {"name": "sim", "namespace": "d", "uid": "u"},
                       "spec": {"replicas": "many", "template": {}}})
    decision = run(queued(broken))
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == Reason.INVALID_SPEC


# --- Rule 3b: the time allocation ran out: EXPIRED ---------------------------------------------


def running_job(deadline: int | None = 60, replicas: int = 1):  # type: ignore[no-untyped-def]
    queued = in_state(job(replicas=replicas, deadline=deadline), JobState.IN_QUEUE)
    pods = [pod(r).running() for r in range(replicas)]
    return in_state(queued, JobState.RUNNING, *pods)


def test_rule_3b_expires_at_is_started_at_plus_deadline() -> None:
    running = running_job(deadline=60)
    assert running.status.started_at == NOW
    assert running.status.expires_at == NOW + timedelta(seconds=60)


def test_rule_3b_queue_time_is_not_counted() -> None:
    queued = in_state(job(deadline=60), JobState.IN_QUEUE)
    decision = run(queued, pod(0), now=NOW + timedelta(hours=5))
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.status.expires_at is None


def test_rule_3b_expires_when_now_reaches_expires_at() -> None:
    running = running_job(deadline=60)
    assert run(running, pod(0).running(), now=NOW + timedelta(seconds=59)).status.state is (
        JobState.RUNNING)
    decision = run(running, pod(0).running(), now=NOW + timedelta(seconds=60))
    assert decision.status.state is JobState.EXPIRED
    assert decision.status.reason == Reason.DEADLINE_EXCEEDED
    assert decision.delete_pods == ("sim-0",)
    assert decision.event is not None and decision.event.type == "Warning"


def test_rule_3b_the_expiry_is_scheduled() -> None:
    running = running_job(deadline=60)
    decision = run(running, pod(0).running(), now=NOW + timedelta(seconds=10))
    assert decision.recheck_at == NOW + timedelta(seconds=60)


def test_rule_3b_raising_the_deadline_moves_expires_at() -> None:
    running = running_job(deadline=60)
    extended = job(deadline=600, status=running.status, generation=2)
    decision = run(extended, pod(0).running(), now=NOW + timedelta(seconds=120))
    assert decision.status.state is JobState.RUNNING
    assert decision.status.expires_at == NOW + timedelta(seconds=600)
    assert decision.status.observed_generation == 2
    assert decision.changed


def test_rule_3b_lowering_below_the_time_used_expires_at_once() -> None:
    running = running_job(deadline=600)
    lowered = job(deadline=30, status=running.status, generation=2)
    decision = run(lowered, pod(0).running(), now=NOW + timedelta(seconds=31))
    assert decision.status.state is JobState.EXPIRED


def test_rule_3b_a_pod_killed_for_its_own_deadline_expires_the_job() -> None:
    decision = run(running_job(deadline=None), pod(0).deadline_exceeded())
    assert decision.status.state is JobState.EXPIRED
    assert decision.status.reason == Reason.DEADLINE_EXCEEDED


def test_rule_3b_expiry_that_fell_due_while_the_operator_was_down_fires_at_once() -> None:
    running = running_job(deadline=60)
    decision = run(running, pod(0).running(), now=NOW + timedelta(days=3))
    assert decision.status.state is JobState.EXPIRED


# --- Rule 3c: a replica terminated on its own: SUCCESS -----------------------------------------


def test_rule_3c_completed_when_every_terminated_replica_exited_0() -> None:
    decision = run(running_job(replicas=2), pod(0).terminated(0), pod(1).running())
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.reason == Reason.COMPLETED
    assert decision.delete_pods == ("sim-1",)  # the gang ends with its first replica


def test_rule_3c_non_zero_exit_is_still_success() -> None:
    decision = run(running_job(replicas=2), pod(0).terminated(0), pod(1).terminated(3))
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.reason == Reason.NON_ZERO_EXIT
    assert "exited with code 3" in (decision.status.message or "")
    assert decision.status.replica_statuses[1].exit_code == 3


def test_rule_3c_oom_kill_is_success_with_the_container_reason() -> None:
    decision = run(running_job(), pod(0).terminated(137, "OOMKilled"))
    assert decision.status.reason == Reason.NON_ZERO_EXIT
    assert "OOMKilled" in (decision.status.message or "")
    assert decision.status.replica_statuses[0].reason == "OOMKilled"


def test_rule_3c_signal_is_success_with_the_signal() -> None:
    decision = run(running_job(), pod(0).terminated(0, "Error", signal=9))
    assert decision.status.reason == Reason.NON_ZERO_EXIT
    assert decision.status.replica_statuses[0].signal == 9


def test_rule_3c_a_job_that_ended_before_it_was_seen_running_has_no_started_at() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    decision = run(queued, pod(0).terminated(0))
    assert decision.status.state is JobState.SUCCESS
    assert decision.status.started_at is None


# --- Rule 3: ranking ----------------------------------------------------------------------------


def test_rule_3_failure_beats_expired_beats_success() -> None:
    running = running_job(replicas=3, deadline=60)
    late = NOW + timedelta(seconds=61)
    everything = run(running, pod(0).terminated(0), pod(1).evicted(), pod(2).running(), now=late)
    assert everything.status.state is JobState.FAILURE
    expired_and_done = run(running, pod(0).terminated(0), pod(1).running(), pod(2).running(),
                           now=late)
    assert expired_and_done.status.state is JobState.EXPIRED


def test_rule_3_final_state_is_written_before_pods_are_deleted() -> None:
    decision = run(running_job(replicas=2), pod(0).evicted(), pod(1).running())
    assert decision.changed and decision.status.state is JobState.FAILURE
    assert decision.delete_pods == ("sim-1",)
    assert decision.status.running_replicas == 0


# --- Rule 4: running or queued ------------------------------------------------------------------


def test_rule_4_a_new_job_is_queued_and_its_pods_are_created() -> None:
    decision = run(job(replicas=3))
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.status.reason == Reason.WAITING_FOR_REPLICAS
    assert decision.status.message == "0/3 replicas running"
    assert decision.create_ranks == (0, 1, 2)
    assert decision.create_gang
    assert [r.rank for r in decision.status.replica_statuses] == [0, 1, 2]


def test_rule_4_one_replica_gets_no_service() -> None:
    assert not run(job(replicas=1)).create_gang


def test_rule_4_running_when_every_replica_runs() -> None:
    queued = in_state(job(replicas=2), JobState.IN_QUEUE)
    decision = run(queued, pod(0).running(), pod(1).running())
    assert decision.status.state is JobState.RUNNING
    assert decision.status.reason == Reason.ALL_REPLICAS_RUNNING
    assert decision.status.running_replicas == 2


def test_rule_4_readiness_is_not_required() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    assert run(queued, pod(0).not_ready()).status.state is JobState.RUNNING


def test_rule_4_waiting_for_replicas_counts_them() -> None:
    queued = in_state(job(replicas=3), JobState.IN_QUEUE)
    decision = run(queued, pod(0).running(), pod(1).running(), pod(2))
    assert decision.status.reason == Reason.WAITING_FOR_REPLICAS
    assert decision.status.message == "2/3 replicas running"
    assert decision.status.running_replicas == 2


def test_rule_4_unschedulable_with_the_schedulers_message() -> None:
    queued = in_state(job(replicas=3), JobState.IN_QUEUE)
    decision = run(queued, pod(0).running(), pod(1).running(), pod(2).unschedulable())
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.status.reason == Reason.UNSCHEDULABLE
    assert decision.status.message == "0/3 nodes are available: insufficient cpu"
    assert decision.status.running_replicas == 2


def test_rule_4_image_pulling() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    decision = run(queued, pod(0).waiting("ImagePullBackOff").started(3))
    assert decision.status.reason == Reason.IMAGE_PULLING


def test_rule_4_container_creating() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    decision = run(queued, pod(0).waiting("ContainerCreating"))
    assert decision.status.reason == Reason.CONTAINER_CREATING


def test_rule_4_unschedulable_is_the_most_telling_reason() -> None:
    queued = in_state(job(replicas=3), JobState.IN_QUEUE)
    decision = run(queued, pod(0).waiting("ContainerCreating"),
                   pod(1).waiting("ErrImagePull").started(1), pod(2).unschedulable())
    assert decision.status.reason == Reason.UNSCHEDULABLE


def test_rule_4_pods_of_an_earlier_job_with_the_same_name_are_not_counted() -> None:
    stale = pod(0).running().owned_by("an-earlier-uid").observe()
    ours = in_state(job(), JobState.IN_QUEUE)
    # The controller filters by owner uid before deciding; the rules see no pod here.
    decision = decide(ours, Observed(pods={}, creating=frozenset({0})), NOW, Settings())
    assert decision.status.state is JobState.IN_QUEUE
    assert stale.owner_uid == "an-earlier-uid"


def test_every_job_is_in_queue_first_even_when_first_seen_finished() -> None:
    decision = run(job(), pod(0).terminated(0))  # the operator was down the whole time
    assert decision.status.state is JobState.IN_QUEUE
    assert decision.delete_pods == ()
    second = run(after(job(), decision), pod(0).terminated(0))
    assert second.status.state is JobState.SUCCESS
    assert [u.state for u in second.status.updates] == [JobState.IN_QUEUE, JobState.SUCCESS]


def test_a_forbidden_template_is_queued_first_without_creating_pods() -> None:
    privileged = {"containers": [{"name": "m", "image": "x",
                                  "securityContext": {"privileged": True}}]}
    first = run(job(template_spec=privileged))
    assert first.status.state is JobState.IN_QUEUE and first.create_ranks == ()
    assert first.status.replica_statuses == []


# --- What every state change does ---------------------------------------------------------------


def test_a_state_change_appends_one_update_and_one_event() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    decision = run(queued, pod(0).running())
    assert [u.state for u in decision.status.updates] == [JobState.IN_QUEUE, JobState.RUNNING]
    assert decision.event is not None
    assert decision.event.reason == Reason.ALL_REPLICAS_RUNNING
    assert decision.event.message.startswith("IN_QUEUE -> RUNNING")


def test_no_change_writes_nothing_and_emits_nothing() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    running = in_state(queued, JobState.RUNNING, pod(0).running())
    decision = run(running, pod(0).running(), now=NOW + timedelta(seconds=5))
    assert not decision.changed
    assert decision.event is None


def test_a_node_assignment_alone_is_not_worth_a_write() -> None:
    queued = in_state(job(), JobState.IN_QUEUE)
    decision = run(queued, pod(0).on_node("node-2"))
    assert not decision.changed


def test_updates_keep_at_most_64_entries() -> None:
    history = [StatusUpdate(timestamp=NOW, state=JobState.IN_QUEUE, message=str(i))
               for i in range(MAX_UPDATES)]
    queued = in_state(job(), JobState.IN_QUEUE)
    full = job(status=queued.status.model_copy(update={"updates": history}))
    decision = run(full, pod(0).running())
    assert len(decision.status.updates) == MAX_UPDATES
    assert decision.status.updates[-1].state is JobState.RUNNING
    assert decision.status.updates[0].message == "1"


def test_conditions_follow_the_state() -> None:
    running = running_job()
    conditions = {c.type: c for c in running.status.conditions}
    assert conditions["Running"].status == "True"
    assert conditions["Finished"].status == "False"
    done = run(running, pod(0).terminated(0)).status
    conditions = {c.type: c for c in done.conditions}
    assert conditions["Running"].status == "False"
    assert conditions["Finished"].status == "True"
    assert conditions["Finished"].reason == "SUCCESS"
    assert done.finished_at == NOW


def test_finished_at_is_set_only_with_the_final_state() -> None:
    assert running_job().status.finished_at is None
