"""What the state rules need to know of one replica pod, read once from the pod's JSON.

`observe()` turns a pod body (as the watch delivers it) into a small frozen `ReplicaPod`; the
index keeps only these, never whole pod bodies. It is total: any shape of pod, fields missing or
of the wrong type included, gives a `ReplicaPod` and never raises. Each fallback is noted where
it is taken. Pure: no I/O, no kopf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .models import JOB_NAME_LABEL, RANK_LABEL

# Container waiting reasons, as the kubelet writes them.
IMAGE_PULL_RETRYING = frozenset({"ErrImagePull", "ImagePullBackOff"})
IMAGE_PULL_HOPELESS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
CONTAINER_CREATE_RETRYING = frozenset({"CreateContainerConfigError", "CreateContainerError"})
CONTAINER_CREATING = frozenset({"ContainerCreating", "PodInitializing"})
# The DisruptionTarget reason of the taint manager's eviction: on Kubernetes >= 1.36 what becomes
# of the pods of a node that stopped reporting (the `node.kubernetes.io/unreachable` taint).
TAINT_EVICTION = "DeletionByTaintManager"


@dataclass(frozen=True, slots=True)
class Termination:
    """How a replica's container ended."""

    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaPod:
    """A compact summary of one replica pod."""

    name: str
    namespace: str
    job_name: str
    rank: int | None
    owner_uid: str | None  # the controller ownerReference's uid: which job instance owns it
    uid: str = ""
    phase: str = ""
    node: str | None = None
    deleting: bool = False
    reason: str | None = None  # pod status.reason: Evicted, NodeLost, DeadlineExceeded, OutOfcpu
    message: str | None = None
    disrupted: bool = False  # a DisruptionTarget condition is True: evicted or preempted
    disruption_reason: str | None = None  # its reason, e.g. DeletionByTaintManager
    unschedulable: str | None = None  # the scheduler's message while it finds no node
    started_at: datetime | None = None  # status.startTime, else creationTimestamp
    waiting_reason: str | None = None
    waiting_message: str | None = None
    termination: Termination | None = None

    @property
    def terminated(self) -> bool:
        """The replica's containers ended on their own (rule 3c)."""
        if self.phase == "Succeeded":
            return True
        return self.phase == "Failed" and self.termination is not None

    @property
    def running(self) -> bool:
        """Counts towards runningReplicas (rule 4)."""
        return self.phase == "Running" and not self.deleting

    @property
    def active(self) -> bool:
        """Not yet over: deleting it would stop something."""
        return self.phase not in ("Succeeded", "Failed")


def observe(pod: Mapping[str, Any]) -> ReplicaPod:
    """Summarise a pod body. Never raises."""
    meta = as_mapping(pod.get("metadata") if isinstance(pod, Mapping) else None)
    spec = as_mapping(pod.get("spec") if isinstance(pod, Mapping) else None)
    status = as_mapping(pod.get("status") if isinstance(pod, Mapping) else None)
    labels = as_mapping(meta.get("labels"))
    waiting_reason, waiting_message = _first_waiting(status)
    disruption = _condition(status, "DisruptionTarget", "True")
    return ReplicaPod(
        name=_str(meta.get("name")) or "",
        namespace=_str(meta.get("namespace")) or "",
        job_name=_str(labels.get(JOB_NAME_LABEL)) or "",
        rank=_rank(labels.get(RANK_LABEL)),
        owner_uid=controller_uid(meta.get("ownerReferences")),
        uid=_str(meta.get("uid")) or "",
        phase=_str(status.get("phase")) or "",
        node=_str(spec.get("nodeName")),
        deleting=meta.get("deletionTimestamp") is not None,
        reason=_str(status.get("reason")),
        message=_str(status.get("message")),
        disrupted=disruption is not None,
        disruption_reason=_str(disruption.get("reason")) if disruption is not None else None,
        unschedulable=_unschedulable_message(status),
        started_at=parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp")),
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        termination=_termination(status),
    )


def as_mapping(value: Any) -> Mapping[str, Any]:
    """The value if it is a mapping, else an empty one: untrusted JSON is read without raising."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    # bool is an int in Python; a boolean exit code is malformed, not 0 or 1.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rank(value: Any) -> int | None:
    # A label that is not a plain non-negative number names no rank: the pod is ignored.
    if isinstance(value, str) and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # unparsable timestamps are treated as absent
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def controller_uid(refs: Any) -> str | None:
    """The uid of the controlling owner among ownerReferences: which job instance owns it."""
    for ref in as_list(refs):
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return _str(ref.get("uid"))
    return None


def _condition(status: Mapping[str, Any], kind: str, value: str) -> Mapping[str, Any] | None:
    for condition in as_list(status.get("conditions")):
        if (
            isinstance(condition, Mapping)
            and condition.get("type") == kind
            and condition.get("status") == value
        ):
            return condition
    return None


def _unschedulable_message(status: Mapping[str, Any]) -> str | None:
    condition = _condition(status, "PodScheduled", "False")
    if condition is None or condition.get("reason") != "Unschedulable":
        return None
    return _str(condition.get("message")) or "the scheduler found no node for the pod"


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    # Init containers first: while they wait, the main containers wait behind them.
    statuses = as_list(status.get("initContainerStatuses")) + as_list(
        status.get("containerStatuses")
    )
    return [s for s in statuses if isinstance(s, Mapping)]


def _first_waiting(status: Mapping[str, Any]) -> tuple[str | None, str | None]:
    for container in _container_statuses(status):
        waiting = as_mapping(as_mapping(container.get("state")).get("waiting"))
        reason = _str(waiting.get("reason"))
        if reason:
            return reason, _str(waiting.get("message"))
    return None, None


def _termination(status: Mapping[str, Any]) -> Termination | None:
    """The most telling terminated container: the first non-zero exit, else the first exit."""
    first: Termination | None = None
    for container in as_list(status.get("containerStatuses")):
        if not isinstance(container, Mapping):
            continue
        terminated = as_mapping(as_mapping(container.get("state")).get("terminated"))
        if not terminated:
            continue
        # A terminated state without an exit code is still an end; treat it as a failure.
        exit_code = _int(terminated.get("exitCode"))
        termination = Termination(
            exit_code=1 if exit_code is None else exit_code,
            signal=_int(terminated.get("signal")),
            reason=_str(terminated.get("reason")),
            message=_str(terminated.get("message")),
        )
        if termination.exit_code != 0 or termination.signal:
            return termination
        first = first or termination
    return first
