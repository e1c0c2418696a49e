"""The sync loop against a recording fake of the API: what it writes, in which order."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from typing import Any

from ucloud_operator.controller import Controller, JobKey, merge_patch
from ucloud_operator.gangs import GangPlacement
from ucloud_operator.models import JobState, UCloudJobStatus
from ucloud_operator.nodes import NodeHealth
from ucloud_operator.replicas import ReplicaPod
from ucloud_operator.rules import Job, Settings

from .builders import NOW, job, node, pod
from .fakes import FakeApi

KEY: JobKey = ("default", "sim")


class World:
    """The watch's view: jobs, pods and nodes, changed by the test."""

    def __init__(
        self,
        the_job: Job,
        *pods: ReplicaPod,
        batch_seconds: float = 1.0,
        gang_version: str | None = None,
    ) -> None:
        self.job: Job | None = the_job
        self.pods = list(pods)
        self.nodes: dict[str, NodeHealth] = {}
        self.groups: dict[JobKey, GangPlacement] = {}
        self.api = FakeApi()
        self.controller = Controller(
            self.api,
            Settings(),
            lambda key: self.job,
            lambda key: self.pods,
            nodes=self.nodes.get,
            gangs=self.groups.get,
            gang_version=gang_version,
            clock=lambda: NOW,
            batch_seconds=batch_seconds,
        )

    async def reconcile(self) -> Any:
        """One pass; when it starts creating pods, the creation and the pass it requeues."""
        decision = await self.controller.reconcile(KEY)
        creating = self.controller.creation(KEY)
        if creating is None:
            return decision
        await creating
        if KEY in self.controller.queue:  # a failed creation is retried later, with backoff
            return await self.controller.reconcile(KEY)
        return decision


# The Service, then the pods beside the workers, then the status and its Event.
FIRST_PASSES_OF_A_GANG_OF_TWO = [
    "create Service",
    "create Pod",
    "create Pod",
    "patch status",
    "event",
]


async def test_a_new_job_gets_its_pods_service_status_and_event_in_that_order() -> None:
    world = World(job(replicas=2))
    decision = await world.reconcile()
    assert world.api.kinds() == FIRST_PASSES_OF_A_GANG_OF_TWO
    assert decision.status.state is JobState.IN_QUEUE
    patch = world.api.calls[3][1]
    assert patch["state"] == "IN_QUEUE"
    assert [r["rank"] for r in patch["replicaStatuses"]] == [0, 1]


async def test_nothing_changed_nothing_written() -> None:
    world = World(job())
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)  # the watch caught up
    world.pods = [pod(0).observe()]
    world.api.calls.clear()
    await world.reconcile()
    assert world.api.calls == []


async def test_a_refused_pod_fails_the_job_with_the_api_servers_message() -> None:
    world = World(job())
    world.api.refuse["sim-0"] = "exceeded quota: pods=1"
    first = await world.reconcile()
    assert first.status.state is JobState.IN_QUEUE  # every job is queued first
    decision = await world.reconcile()  # requeued at once after the state change
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == "PodCreationFailed"
    assert "exceeded quota" in decision.status.message
    assert world.api.kinds().count("patch status") == 2


async def test_a_transient_create_error_is_retried_and_keeps_the_others() -> None:
    world = World(job(replicas=2))
    world.api.fail.add("sim-1")
    await world.reconcile()
    assert "patch status" not in world.api.kinds()  # no replica recorded before it exists
    world.api.fail.clear()
    world.api.calls.clear()
    await world.reconcile()
    assert ("create Pod", "sim-1") in world.api.calls
    assert ("create Pod", "sim-0") not in world.api.calls  # in flight, not created twice


async def test_the_written_status_is_used_until_the_watch_catches_up() -> None:
    world = World(job(cancel=True))
    # The watch never shows a status here: each pass must build on the one written before.
    passes = [await world.reconcile() for _ in range(3)]
    assert [p.status.state for p in passes] == [
        JobState.IN_QUEUE,
        JobState.CANCELING,
        JobState.SUCCESS,
    ]
    states = [c[1]["state"] for c in world.api.calls if c[0] == "patch status"]
    assert states == ["IN_QUEUE", "CANCELING", "SUCCESS"]


async def test_the_final_state_is_written_before_pods_are_deleted_and_only_once() -> None:
    world = World(job(replicas=2))
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)
    world.pods = [pod(0).running().observe(), pod(1).running().observe()]
    await world.reconcile()
    world.pods = [pod(0).terminated(0).observe(), pod(1).running().observe()]
    world.api.calls.clear()
    await world.reconcile()
    # The gang's Service goes with the final write, sent beside it; the pods after it.
    assert world.api.kinds() == ["delete Service", "patch status", "event", "delete Pod"]
    world.api.calls.clear()
    await world.reconcile()  # the delete is not yet visible: no second delete
    assert "delete Pod" not in world.api.kinds()
    assert "delete Service" not in world.api.kinds()


async def test_a_service_that_cannot_be_deleted_does_not_hold_back_the_final_state() -> None:
    world = World(job(replicas=2))
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)
    world.pods = [pod(0).terminated(0).observe(), pod(1).running().observe()]
    world.api.fail.add("sim")
    decision = await world.reconcile()
    assert decision.status.state is JobState.SUCCESS
    assert [c[1]["state"] for c in world.api.calls if c[0] == "patch status"][-1] == "SUCCESS"
    assert world.api.kinds()[-2:] == ["event", "delete Pod"]  # and the pass went on


async def test_a_change_that_is_no_new_state_is_batched_into_one_patch() -> None:
    world = World(job(replicas=3), batch_seconds=0.2)
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)
    world.api.calls.clear()
    for ready in (1, 2):  # replicas come up one by one: runningReplicas 1, then 2
        world.pods = [pod(r).running().observe() for r in range(ready)]
        world.pods += [pod(r).observe() for r in range(ready, 3)]
        await world.reconcile()
    assert world.api.calls == []  # held back, not lost: the key is requeued for the batch's end
    runner = asyncio.create_task(world.controller.run(workers=1))
    try:
        patches = await _patches(world, count=1)
    finally:
        runner.cancel()
    assert len(patches) == 1
    assert patches[0]["runningReplicas"] == 2 and patches[0]["state"] == "IN_QUEUE"


async def test_a_new_state_is_written_at_once_even_inside_a_batch() -> None:
    world = World(job(replicas=2), batch_seconds=60)
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)
    world.pods = [pod(0).running().observe(), pod(1).observe()]
    world.api.calls.clear()
    await world.reconcile()
    assert world.api.calls == []  # 1/2 running: waits up to a minute
    world.pods = [pod(0).running().observe(), pod(1).running().observe()]
    decision = await world.reconcile()
    assert decision.status.state is JobState.RUNNING
    assert world.api.kinds() == ["patch status", "event"]


async def test_a_spec_edit_is_acknowledged_at_once() -> None:
    world = World(job(deadline=60), batch_seconds=60)
    first = await world.reconcile()
    world.job = job(deadline=120, generation=2, status=first.status)
    world.api.calls.clear()
    await world.reconcile()
    assert [c[1]["observedGeneration"] for c in world.api.calls] == [2]


async def _patches(world: World, count: int, seconds: float = 5.0) -> list[dict[str, Any]]:
    """The status patches written, once there are `count` of them (polled with a deadline)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        patches = [body for kind, body in world.api.calls if kind == "patch status"]
        if len(patches) >= count:
            return patches
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} patch(es) expected in {seconds} s; calls: {world.api.calls}")


async def test_pods_are_created_beside_the_workers_and_the_status_follows() -> None:
    world = World(job(replicas=2))
    first = await world.controller.reconcile(KEY)
    assert first is not None and first.create_ranks == (0, 1)
    assert world.api.calls == []  # handed to the creating task: the worker is free
    assert await world.controller.reconcile(KEY) is None  # no second creation meanwhile
    creating = world.controller.creation(KEY)
    assert creating is not None
    await creating
    assert KEY in world.controller.queue  # requeued for the status
    decision = await world.controller.reconcile(KEY)
    assert decision.status.state is JobState.IN_QUEUE
    assert world.api.kinds() == FIRST_PASSES_OF_A_GANG_OF_TWO


async def test_pods_are_created_for_a_few_jobs_at_a_time_and_the_rest_wait_their_turn() -> None:
    api = FakeApi()
    jobs: dict[JobKey, Job] = {("default", f"j{i}"): replace(job(), name=f"j{i}") for i in range(3)}
    controller = Controller(
        api, Settings(), jobs.get, lambda key: [], clock=lambda: NOW, create_concurrency=1
    )  # two jobs' pods at a time
    first, second, third = jobs
    for key in jobs:
        await controller.reconcile(key)
    first_creation = controller.creation(first)
    assert first_creation is not None and controller.creation(second) is not None
    assert controller.creation(third) is None and third not in controller.queue
    await first_creation
    assert third in controller.queue  # its turn came when a creation ended
    await controller.reconcile(third)
    assert controller.creation(third) is not None


async def test_the_node_of_a_replica_is_read_and_its_loss_fails_the_job_after_the_grace() -> None:
    world = World(job(replicas=2))
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)
    world.pods = [pod(0).running().observe(), pod(1).running().on_node("node-1").observe()]
    running = await world.reconcile()
    assert running.status.state is JobState.RUNNING
    world.job = replace(world.job, status=running.status)
    world.nodes["node-0"] = node("node-0").observe()
    world.nodes["node-1"] = node("node-1").unreachable(45).observe()
    within = await world.reconcile()
    assert within.status.state is JobState.RUNNING
    assert within.recheck_at == NOW + timedelta(seconds=15)  # the grace (60 s) runs out then
    world.nodes["node-1"] = node("node-1").unreachable(61).observe()
    world.api.calls.clear()
    lost = await world.reconcile()
    assert lost.status.state is JobState.FAILURE
    assert lost.status.message == (
        "replica 1 (sim-1): its node node-1 stopped reporting 61s ago (Ready=Unknown)"
    )
    assert world.api.kinds() == [
        "delete Service",
        "patch status",
        "event",
        "delete Pod",
        "delete Pod",
    ]


async def test_pods_of_an_earlier_job_of_the_same_name_are_ignored() -> None:
    world = World(job(), pod(0).running().owned_by("older").observe())
    decision = await world.reconcile()
    assert decision.status.state is JobState.IN_QUEUE
    assert ("create Pod", "sim-0") in world.api.calls


async def test_a_deleted_job_is_forgotten() -> None:
    world = World(job())
    world.job = None
    assert await world.reconcile() is None
    assert world.api.calls == []


async def test_worker_retries_a_failed_reconcile_with_backoff() -> None:
    world = World(job())
    world.api.fail.add("sim-0")
    runner = asyncio.create_task(world.controller.run(workers=1))
    world.controller.enqueue(KEY)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if "create Pod" in world.api.kinds():
            break
    world.api.fail.clear()
    for _ in range(400):  # the first retry comes after 1 s
        await asyncio.sleep(0.01)
        if "patch status" in world.api.kinds():
            break
    runner.cancel()
    assert world.api.kinds().count("create Pod") == 2
    assert "patch status" in world.api.kinds()


def test_merge_patch_nulls_fields_that_are_gone() -> None:
    before = UCloudJobStatus(state=JobState.RUNNING, expires_at=NOW, message="m")
    after = UCloudJobStatus(state=JobState.RUNNING, message="m")
    assert merge_patch(before, after) == {
        "expiresAt": None,
        "state": "RUNNING",
        "message": "m",
        "conditions": [],
        "replicaStatuses": [],
        "updates": [],
    }


LOG_PROBE = """
from ucloud_operator.__main__ import configure_logging
from ucloud_operator.controller import _log
configure_logging("{fmt}", "INFO")
_log(("team-a", "train")).info("IN_QUEUE -> RUNNING")
"""


def logged(fmt: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", LOG_PROBE.format(fmt=fmt)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_a_json_log_line_carries_its_job_under_job() -> None:
    line = json.loads(logged("json").strip().splitlines()[-1])
    assert line["message"] == "IN_QUEUE -> RUNNING"
    assert line["job"]["namespace"] == "team-a" and line["job"]["name"] == "train"
    assert line["job"]["kind"] == "UCloudJob"


def test_a_text_log_line_names_its_job() -> None:
    assert "[team-a/train] IN_QUEUE -> RUNNING" in logged("text")


# --- gang admission ----------------------------------------------------------------------------


async def test_under_gang_admission_the_podgroup_comes_before_the_pods_which_name_it() -> None:
    world = World(job(replicas=2), gang_version="v1beta1")
    await world.reconcile()
    assert world.api.kinds() == [
        "create Service",
        "create PodGroup",
        "create Pod",
        "create Pod",
        "patch status",
        "event",
    ]
    group, *pods = [body for body in world.api.created if body["kind"] != "Service"]
    assert group["apiVersion"] == "scheduling.k8s.io/v1beta1"
    assert group["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
    assert [p["spec"]["schedulingGroup"] for p in pods] == [{"podGroupName": "sim"}] * 2


async def test_without_gang_admission_no_podgroup_and_pods_name_none() -> None:
    world = World(job(replicas=2))
    await world.reconcile()
    assert "create PodGroup" not in world.api.kinds()
    assert all("schedulingGroup" not in b["spec"] for b in world.api.created if b["kind"] == "Pod")


async def test_a_single_replica_gets_no_podgroup_under_gang_admission() -> None:
    world = World(job(replicas=1), gang_version="v1alpha2")
    await world.reconcile()
    assert world.api.kinds()[:1] == ["create Pod"]
    assert "create PodGroup" not in world.api.kinds()
    assert "schedulingGroup" not in world.api.created[0]["spec"]


async def test_a_refused_podgroup_creates_no_pod_and_fails_the_job() -> None:
    world = World(job(replicas=2), gang_version="v1beta1")
    world.api.refuse["PodGroup/sim"] = 'podgroups.scheduling.k8s.io "sim" is forbidden'
    await world.reconcile()
    assert "create Pod" not in world.api.kinds()
    decision = await world.reconcile()
    assert decision.status.state is JobState.FAILURE
    assert decision.status.reason == "PodCreationFailed"
    assert "its PodGroup was refused: podgroups.scheduling.k8s.io" in decision.status.message


async def test_a_podgroup_that_cannot_be_created_now_holds_the_pods_back_until_it_can() -> None:
    world = World(job(replicas=2), gang_version="v1beta1")
    world.api.fail.add("PodGroup/sim")
    await world.reconcile()
    assert "create Pod" not in world.api.kinds()  # never a pod placed without its group
    world.api.fail.clear()
    world.api.calls.clear()
    await world.reconcile()
    assert world.api.kinds()[:4] == [
        "create Service",
        "create PodGroup",
        "create Pod",
        "create Pod",
    ]


async def test_a_gang_the_scheduler_cannot_place_is_queued_with_its_message() -> None:
    world = World(job(replicas=2), gang_version="v1beta1")
    first = await world.reconcile()
    world.job = replace(world.job, status=first.status)
    world.pods = [pod(0).unschedulable("pod group is unschedulable").observe(), pod(1).observe()]
    message = "minCount (2) cannot be satisfied: 1 scheduled, 0 remaining"
    world.groups[KEY] = GangPlacement("job-uid-1", False, "Unschedulable", message)
    decision = await world.reconcile()
    assert decision.status.state is JobState.IN_QUEUE
    assert (decision.status.reason, decision.status.message) == ("Unschedulable", message)
    assert decision.status.running_replicas == 0


async def test_a_gang_entering_its_final_state_deletes_its_podgroup_with_the_write() -> None:
    world = World(job(replicas=2), gang_version="v1alpha2")
    decision = await world.reconcile()
    world.pods = [pod(0).observe(), pod(1).observe()]
    world.job = job(replicas=2, cancel=True, status=decision.status)
    for _ in range(2):  # CANCELING, then SUCCESS once the pods are gone
        decision = await world.reconcile()
        world.job = replace(world.job, status=decision.status)
        world.pods = []
    assert decision.status.state is JobState.SUCCESS
    assert world.api.calls.count(("delete PodGroup", "v1alpha2/sim")) == 1
    assert world.api.calls.count(("delete Service", "sim")) == 1
