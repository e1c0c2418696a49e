"""Properties of the state rules over random histories of pod events (hypothesis).

A history starts from a new job and feeds `decide` one observation after another, each built
from the previous decision (created pods appear, deleted pods go) plus random pod events, the
clock moving forward and, sometimes, a cancel, a new deadline, or the replicas' node
(`node-0`, where the builders place them) that stops or starts reporting.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ucloud_operator.models import MAX_UPDATES, JobState
from ucloud_operator.nodes import NodeHealth
from ucloud_operator.replicas import ReplicaPod
from ucloud_operator.rules import Job, Observed, Settings, decide
from ucloud_operator.status import Decision

from .builders import NOW, PodBuilder, job

EXAMPLES = settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# What can happen to one replica pod between two observations.
POD_EVENTS = (
    "pending", "running", "not_ready", "unschedulable", "image_pull", "invalid_image",
    "container_creating", "config_error", "completed", "exit_1", "oom", "signal", "evicted",
    "disrupted", "node_lost", "rejected", "deadline", "deleting", "vanish", "garbage",
)


@functools.cache  # summaries are immutable: build each shape once
def make_pod(rank: int, event: str, age: float) -> ReplicaPod | None:
    builder = PodBuilder(rank).started(age)
    match event:
        case "vanish":
            return None
        case "garbage":
            builder.body["status"] = {"phase": 7, "containerStatuses": "x", "conditions": [None]}
        case "running" | "not_ready" | "evicted" | "disrupted" | "node_lost" | "deleting":
            builder = getattr(builder, event if event != "deleting" else "running")()
            if event == "deleting":
                builder.deleting()
        case "unschedulable":
            builder.unschedulable()
        case "image_pull":
            builder.waiting("ImagePullBackOff")
        case "invalid_image":
            builder.waiting("InvalidImageName")
        case "container_creating":
            builder.waiting("ContainerCreating")
        case "config_error":
            builder.waiting("CreateContainerConfigError")
        case "completed":
            builder.terminated(0)
        case "exit_1":
            builder.terminated(1)
        case "oom":
            builder.terminated(137, "OOMKilled")
        case "signal":
            builder.terminated(0, "Error", signal=9)
        case "rejected":
            builder.rejected()
        case "deadline":
            builder.deadline_exceeded()
    return builder.observe()


@dataclass(frozen=True)
class Step:
    job: Job  # as decided on, with the previous status
    observed: Observed
    now_offset: float
    decision: Decision


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    replicas = draw(st.integers(1, 4))
    deadline = draw(st.none() | st.integers(1, 600))
    current = job(replicas=replicas, deadline=deadline)
    pods: dict[int, ReplicaPod] = {}
    nodes: dict[str, NodeHealth] = {}
    clock = 0.0
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 8))):
        clock += draw(st.sampled_from([0.0, 1.0, 30.0, 200.0]))
        match draw(st.integers(0, 5)):
            case 0:  # the node stopped reporting, a while ago
                ago = draw(st.sampled_from([0.0, 30.0, 90.0]))
                since = NOW + timedelta(seconds=clock - ago)
                nodes["node-0"] = NodeHealth("node-0", since, "Ready=Unknown")
            case 1:
                nodes["node-0"] = NodeHealth("node-0")
            case 2:
                nodes.clear()  # no node facts (the operator may not read nodes)
        if draw(st.integers(0, 9)) == 0:
            current = replace(current, spec=current.spec.model_copy(update={"cancel": True}))
        if draw(st.integers(0, 9)) == 0:
            new_deadline = draw(st.none() | st.integers(1, 900))
            spec = current.spec.model_copy(update={"active_deadline_seconds": new_deadline})
            current = replace(current, spec=spec, generation=current.generation + 1)
        for rank in draw(st.lists(st.integers(0, replicas - 1), max_size=replicas)):
            event = draw(st.sampled_from(POD_EVENTS))
            summary = make_pod(rank, event, age=draw(st.sampled_from([1.0, 60.0, 300.0])))
            if summary is None:
                pods.pop(rank, None)
            else:
                pods[rank] = summary
        observed = Observed(pods=dict(pods), nodes=dict(nodes))
        decision = decide(current, observed, NOW + timedelta(seconds=clock), Settings())
        steps.append(Step(current, observed, clock, decision))
        for rank in decision.create_ranks:  # the created pod shows up pending
            pods[rank] = make_pod(rank, "pending", 1.0)  # type: ignore[assignment]
        for name in decision.delete_pods:
            pods.pop(int(name.rsplit("-", 1)[1]), None)
        current = replace(current, status=decision.status)
    return steps


def states(history: list[Step]) -> list[JobState | None]:
    return [step.decision.status.state for step in history]


def node_lost_past_grace(step: Step) -> bool:
    health = step.observed.nodes.get("node-0")
    if health is None or health.lost_since is None:
        return False
    now = NOW + timedelta(seconds=step.now_offset)
    return now - health.lost_since >= Settings().node_lost_grace


@EXAMPLES
@given(histories())
def test_a_final_state_never_changes(history: list[Step]) -> None:
    seen = states(history)
    for index, state in enumerate(seen):
        if state is not None and state.is_final:
            assert all(later is state for later in seen[index:]), seen
            break


@EXAMPLES
@given(histories())
def test_every_job_starts_in_queue(history: list[Step]) -> None:
    assert history[0].decision.status.state is JobState.IN_QUEUE
    assert history[0].decision.status.updates[0].state is JobState.IN_QUEUE


@EXAMPLES
@given(histories())
def test_canceling_only_ends_in_success(history: list[Step]) -> None:
    seen = states(history)
    for before, after in itertools.pairwise(seen):
        if before is JobState.CANCELING:
            assert after in (JobState.CANCELING, JobState.SUCCESS), seen


@EXAMPLES
@given(histories())
def test_running_holds_exactly_when_every_replica_runs(history: list[Step]) -> None:
    for step in history:
        status = step.decision.status
        replicas = step.job.spec.replicas if step.job.spec else 0
        every_replica_runs = sum(1 for p in step.observed.pods.values() if p.running) == replicas
        if status.state is JobState.RUNNING:
            assert every_replica_runs and status.running_replicas == replicas
        previous = step.job.status.state
        plainly_running = not node_lost_past_grace(step) and all(
            p.running and not p.disrupted and p.reason is None
            for p in step.observed.pods.values()
        )
        # Also a deadline added to a running job that had none: it can expire it at once.
        expires_at = step.decision.status.expires_at
        expired = expires_at is not None and NOW + timedelta(seconds=step.now_offset) >= expires_at
        if (
            every_replica_runs
            and plainly_running
            and not step.job.spec.cancel
            and previous in (JobState.IN_QUEUE, JobState.RUNNING)
            and not expired
        ):
            assert status.state is JobState.RUNNING, (status.state, status.reason)


@EXAMPLES
@given(histories())
def test_an_active_replica_on_a_node_lost_past_the_grace_fails_the_job(history: list[Step]) -> None:
    for step in history:
        on_lost_node = node_lost_past_grace(step) and any(
            p.active and p.node == "node-0" for p in step.observed.pods.values()
        )
        previous = step.job.status.state
        if on_lost_node and not step.job.spec.cancel and previous in (
            JobState.IN_QUEUE, JobState.RUNNING
        ):
            assert step.decision.status.state is JobState.FAILURE, step.decision.status


@EXAMPLES
@given(histories())
def test_started_at_is_set_once(history: list[Step]) -> None:
    started = [step.decision.status.started_at for step in history]
    first = next((moment for moment in started if moment is not None), None)
    if first is not None:
        index = started.index(first)
        assert all(moment == first for moment in started[index:])
        assert history[index].decision.status.state is JobState.RUNNING


@EXAMPLES
@given(histories())
def test_expires_at_is_started_at_plus_the_deadline(history: list[Step]) -> None:
    for step in history:
        status = step.decision.status
        deadline = step.job.spec.active_deadline_seconds
        before = step.job.status
        if before.state is not None and before.state.is_final:
            assert status.expires_at == before.expires_at  # history: a late edit moves nothing
            continue
        if status.started_at is None or deadline is None:
            assert status.expires_at is None
        else:
            assert status.expires_at == status.started_at + timedelta(seconds=deadline)


@EXAMPLES
@given(histories())
def test_each_state_change_adds_one_update_and_nothing_else_does(history: list[Step]) -> None:
    for step in history:
        before, after = step.job.status.updates, step.decision.status.updates
        if step.decision.status.state is step.job.status.state:
            assert after == before
        else:
            assert after[-1].state is step.decision.status.state
            assert after[-1].reason == step.decision.status.reason
            assert after[:-1] == before[-(MAX_UPDATES - 1) :]


@EXAMPLES
@given(histories())
def test_the_same_input_always_gives_the_same_output(history: list[Step]) -> None:
    for step in history:
        again = decide(step.job, step.observed, NOW + timedelta(seconds=step.now_offset),
                       Settings())
        assert again == step.decision


@EXAMPLES
@given(histories())
def test_an_active_job_on_a_lost_node_is_looked_at_again_when_the_grace_ends(
    history: list[Step],
) -> None:
    grace = Settings().node_lost_grace
    for step in history:
        health = step.observed.nodes.get("node-0")
        now = NOW + timedelta(seconds=step.now_offset)
        status = step.decision.status
        if health is None or health.lost_since is None or status.state.is_final:
            continue
        if any(p.active and p.node == "node-0" for p in step.observed.pods.values()):
            due = health.lost_since + grace
            if due > now:
                assert step.decision.recheck_at is not None
                assert step.decision.recheck_at <= due
