"""Fluent test objects: `pod(1).running()`, `job(replicas=3)`, `node().unreachable(75)`."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from ucloud_operator.gangs import GangPlacement
from ucloud_operator.jobs import read_job
from ucloud_operator.models import JOB_NAME_LABEL, RANK_LABEL, JobState, UCloudJobStatus
from ucloud_operator.nodes import UNREACHABLE_TAINT, NodeHealth, observe_node
from ucloud_operator.replicas import ReplicaPod, observe
from ucloud_operator.rules import Job, Observed, Settings, decide
from ucloud_operator.status import Decision

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
JOB_UID = "job-uid-1"
GRACE = Settings().image_pull_grace


def shaped_like(*keys: str) -> st.SearchStrategy[Any]:
    """JSON-ish garbage whose mapping keys (and some leaves) are the given names: bodies that
    look like what a reader expects without being it."""
    names = st.sampled_from(keys)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8) | names,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=5)
        ),
        max_leaves=40,
    )


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class PodBuilder:
    def __init__(self, rank: int, job_name: str = "sim", owner: str = JOB_UID) -> None:
        self.body: dict[str, Any] = {
            "metadata": {
                "name": f"{job_name}-{rank}",
                "namespace": "default",
                "uid": f"pod-uid-{rank}",
                "labels": {JOB_NAME_LABEL: job_name, RANK_LABEL: str(rank)},
                "ownerReferences": [{"controller": True, "uid": owner, "kind": "UCloudJob"}],
                "creationTimestamp": _ts(NOW - timedelta(seconds=10)),
            },
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": "Pending", "startTime": _ts(NOW - timedelta(seconds=10))},
        }

    @property
    def status(self) -> dict[str, Any]:
        return self.body["status"]  # type: ignore[no-any-return]

    def on_node(self, node: str = "node-0") -> PodBuilder:
        self.body["spec"]["nodeName"] = node
        return self

    def started(self, seconds_ago: float) -> PodBuilder:
        self.status["startTime"] = _ts(NOW - timedelta(seconds=seconds_ago))
        return self

    def running(self) -> PodBuilder:
        self.on_node()
        self.status["phase"] = "Running"
        self.status["containerStatuses"] = [
            {"name": "main", "ready": True, "state": {"running": {"startedAt": _ts(NOW)}}}
        ]
        return self

    def not_ready(self) -> PodBuilder:
        self.running()
        self.status["containerStatuses"][0]["ready"] = False
        return self

    def waiting(self, reason: str, message: str = "") -> PodBuilder:
        self.on_node()
        self.status["containerStatuses"] = [
            {
                "name": "main",
                "ready": False,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ]
        return self

    def unschedulable(
        self, message: str = "0/3 nodes are available: insufficient cpu"
    ) -> PodBuilder:
        self.status.pop("startTime", None)
        self.status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ]
        return self

    def terminated(
        self, exit_code: int = 0, reason: str | None = None, signal: int | None = None
    ) -> PodBuilder:
        self.on_node()
        state: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        }
        if signal is not None:
            state["signal"] = signal
        self.status["phase"] = "Succeeded" if exit_code == 0 and not signal else "Failed"
        self.status["containerStatuses"] = [{"name": "main", "state": {"terminated": state}}]
        return self

    def evicted(self) -> PodBuilder:
        self.terminated(137)
        self.status["reason"] = "Evicted"
        self.status["message"] = "The node was low on resource: memory."
        return self

    def disrupted(self, reason: str = "PreemptionByScheduler") -> PodBuilder:
        self.running()
        self.status["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "reason": reason}
        ]
        return self

    def node_lost(self) -> PodBuilder:
        self.running()
        self.status["phase"] = "Unknown"
        self.status["reason"] = "NodeLost"
        return self

    def rejected(self, reason: str = "OutOfcpu") -> PodBuilder:
        self.on_node()
        self.status.pop("containerStatuses", None)
        self.status["phase"] = "Failed"
        self.status["reason"] = reason
        self.status["message"] = "Pod Node didn't have enough resource: cpu"
        return self

    def deadline_exceeded(self) -> PodBuilder:
        self.running()
        self.status["phase"] = "Failed"
        self.status["reason"] = "DeadlineExceeded"
        return self

    def deleting(self) -> PodBuilder:
        self.body["metadata"]["deletionTimestamp"] = _ts(NOW)
        return self

    def owned_by(self, uid: str) -> PodBuilder:
        self.body["metadata"]["ownerReferences"][0]["uid"] = uid
        return self

    def build(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def observe(self) -> ReplicaPod:
        return observe(self.body)


def pod(rank: int = 0) -> PodBuilder:
    return PodBuilder(rank)


class NodeBuilder:
    """A node as the API server has it: Ready and heartbeating, until told otherwise."""

    def __init__(self, name: str = "node-0") -> None:
        self.body: dict[str, Any] = {
            "metadata": {"name": name, "resourceVersion": "1"},
            "spec": {},
            "status": {
                "conditions": [
                    {
                        "type": "MemoryPressure",
                        "status": "False",
                        "lastTransitionTime": _ts(NOW - timedelta(hours=1)),
                    },
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": _ts(NOW),
                        "lastTransitionTime": _ts(NOW - timedelta(hours=1)),
                    },
                ]
            },
        }

    @property
    def ready_condition(self) -> dict[str, Any]:
        return next(c for c in self.body["status"]["conditions"] if c["type"] == "Ready")

    def heartbeat(self, seconds_later: float) -> NodeBuilder:
        self.ready_condition["lastHeartbeatTime"] = _ts(NOW + timedelta(seconds=seconds_later))
        return self

    def ready(
        self, status: str, seconds_ago: float, reason: str = "NodeStatusUnknown"
    ) -> NodeBuilder:
        """The Ready condition moved to `status` `seconds_ago` (the node lifecycle controller
        writes Unknown with reason NodeStatusUnknown when the kubelet stops reporting)."""
        self.ready_condition.update(
            status=status,
            reason=reason,
            lastTransitionTime=_ts(NOW - timedelta(seconds=seconds_ago)),
        )
        return self

    def tainted(self, key: str, effect: str, seconds_ago: float | None) -> NodeBuilder:
        taint: dict[str, Any] = {"key": key, "effect": effect}
        if seconds_ago is not None:
            taint["timeAdded"] = _ts(NOW - timedelta(seconds=seconds_ago))
        self.body["spec"].setdefault("taints", []).append(taint)
        return self

    def unreachable(self, seconds_ago: float) -> NodeBuilder:
        """What Kubernetes 1.36 does to a node that stopped reporting `seconds_ago`."""
        self.ready("Unknown", seconds_ago)
        self.tainted(UNREACHABLE_TAINT, "NoSchedule", None)
        return self.tainted(UNREACHABLE_TAINT, "NoExecute", seconds_ago)

    def build(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def observe(self) -> NodeHealth:
        return observe_node(self.body)


def node(name: str = "node-0") -> NodeBuilder:
    return NodeBuilder(name)


def job(  # noqa: PLR0917 - keyword defaults read best here
    replicas: int = 1,
    deadline: int | None = None,
    cancel: bool = False,
    template_spec: dict[str, Any] | None = None,
    status: UCloudJobStatus | None = None,
    generation: int = 1,
) -> Job:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "cancel": cancel,
        "template": {
            "spec": template_spec or {"containers": [{"name": "main", "image": "busybox"}]}
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    body = {
        "metadata": {
            "name": "sim",
            "namespace": "default",
            "uid": JOB_UID,
            "generation": generation,
        },
        "spec": spec,
    }
    read = read_job(body)
    return replace(read, status=status or UCloudJobStatus())


def observed(
    *pods: PodBuilder | ReplicaPod,
    creating: tuple[int, ...] = (),
    refused: dict[int, str] | None = None,
    nodes: tuple[NodeBuilder, ...] = (),
    gang: GangPlacement | None = None,
) -> Observed:
    summaries = [p.observe() if isinstance(p, PodBuilder) else p for p in pods]
    healths = [n.observe() for n in nodes]
    return Observed(
        pods={s.rank: s for s in summaries if s.rank is not None},
        creating=frozenset(creating),
        refused=refused or {},
        nodes={h.name: h for h in healths},
        gang=gang,
    )


def run(
    the_job: Job,
    *pods: PodBuilder | ReplicaPod,
    creating: tuple[int, ...] = (),
    refused: dict[int, str] | None = None,
    nodes: tuple[NodeBuilder, ...] = (),
    now: datetime = NOW,
    settings: Settings | None = None,
    gang: GangPlacement | None = None,
) -> Decision:
    return decide(
        the_job,
        observed(*pods, creating=creating, refused=refused, nodes=nodes, gang=gang),
        now,
        settings or Settings(),
    )


def after(the_job: Job, decision: Decision) -> Job:
    """The job as the next pass sees it: with the decided status."""
    return replace(the_job, status=decision.status)


def in_state(the_job: Job, state: JobState, *pods: PodBuilder, now: datetime = NOW) -> Job:
    """Drive `the_job` to `state` through the rules themselves, so the status is realistic
    (a new job passes through IN_QUEUE first, as every job does)."""
    for _ in range(3):
        decision = run(the_job, *pods, now=now)
        the_job = after(the_job, decision)
        if decision.status.state is state:
            return the_job
    raise AssertionError(f"never reached {state}: {decision.status}")


def queued(the_job: Job) -> Job:
    """A job whose first pass has been written: IN_QUEUE, its pods created."""
    return in_state(the_job, JobState.IN_QUEUE)
