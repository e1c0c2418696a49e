"""The state rules of docs/api.md, as one pure function.

    decide(job, observed, now, settings) -> Decision

`observed` holds the job's replica pods and, when the operator may read nodes, the health of the
nodes they run on (a node that stopped reporting is lost once the node-lost grace has passed).

Pure: no I/O, no kopf, no clock (time comes in as `now`). The rules are tried in the order of the
contract and the first that applies wins:

    1. final is final            _final_is_final
    2. cancel                    _cancel
    3. the job ends              _ending: a. platform fault  b. expiry  c. termination
    4. running or queued         _running_or_queued

Each rule returns an `Outcome`: the state it gives, its reason and what to do about pods.
`status.build_decision` turns the outcome into the next status, the event and the time to look
again. The function is total: it never raises, whatever the pods look like.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .gangs import GangPlacement
from .models import JobState, Reason, UCloudJobSpec, UCloudJobStatus
from .nodes import NodeHealth
from .replicas import (
    CONTAINER_CREATE_RETRYING,
    CONTAINER_CREATING,
    IMAGE_PULL_HOPELESS,
    IMAGE_PULL_RETRYING,
    TAINT_EVICTION,
    ReplicaPod,
)
from .status import Decision, build_decision, expires_at_of


@dataclass(frozen=True, slots=True)
class Settings:
    """Operator settings the rules depend on."""

    image_pull_grace: timedelta = timedelta(seconds=120)
    forbid_privileged_templates: bool = True
    # How long a replica's node may stop reporting before the replica counts as lost: a short
    # network partition or a kubelet restart should not end a job that still runs.
    node_lost_grace: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Job:
    """The UCloudJob as the rules see it. `spec` is None when the spec could not be read."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: UCloudJobSpec | None
    status: UCloudJobStatus
    spec_error: str | None = None
    template_violations: tuple[str, ...] = ()  # what the pod policy refuses in the template


@dataclass(frozen=True, slots=True)
class Observed:
    """What the operator knows of the job's replica pods right now."""

    pods: Mapping[int, ReplicaPod] = field(default_factory=dict)  # by rank; this job's only
    creating: frozenset[int] = frozenset()  # created by this process, not yet seen by the watch
    refused: Mapping[int, str] = field(default_factory=dict)  # rank -> API server's refusal
    # The replicas' nodes by name, as far as they are known: none at all when the operator may
    # not read nodes, and then only the pods' own signals tell a lost node.
    nodes: Mapping[str, NodeHealth] = field(default_factory=dict)
    # The scheduler's verdict on the job's PodGroup, under gang admission (None: no group seen).
    gang: GangPlacement | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    state: JobState
    reason: str  # a Reason; a final state keeps the one it was written with
    message: str
    create_ranks: tuple[int, ...] = ()
    delete_active: bool = False  # delete every replica pod still running or waiting


def decide(job: Job, observed: Observed, now: datetime, settings: Settings) -> Decision:
    """The next status of `job` and the actions that bring the cluster to it."""
    previous = job.status
    facts = Facts.gather(job, observed, now, settings)
    outcome = (
        _final_is_final(previous)
        or _cancel(job, previous, facts)
        or _ending(job, facts, now, settings)
        or _running_or_queued(job, facts)
    )
    return build_decision(job, facts, _queued_first(job, facts, outcome), now)


# --- the rules -------------------------------------------------------------------------------


def _final_is_final(previous: UCloudJobStatus) -> Outcome | None:
    # Rule 1: later pod events only refresh the replicas that ended on their own; leftover
    # pods are deleted.
    if previous.state is None or not previous.state.is_final:
        return None
    return Outcome(
        previous.state, previous.reason or "", previous.message or "", delete_active=True
    )


def _cancel(job: Job, previous: UCloudJobStatus, facts: Facts) -> Outcome | None:
    # Rule 2: CANCELING is always written before its SUCCESS, so the history shows it.
    if job.spec is None or not job.spec.cancel:
        return None
    if previous.state is JobState.CANCELING and not facts.active_pods:
        return Outcome(JobState.SUCCESS, Reason.CANCELLED, "cancelled by the user")
    return Outcome(
        JobState.CANCELING,
        Reason.CANCEL_REQUESTED,
        "cancel requested: deleting the replica pods",
        delete_active=True,
    )


def _ending(job: Job, facts: Facts, now: datetime, settings: Settings) -> Outcome | None:
    # Rule 3: FAILURE beats EXPIRED beats SUCCESS. The final state is written before the
    # remaining pods are deleted, so the reason is never guessed later from pods disappearing.
    return (
        _platform_fault(job, facts, now, settings)
        or _expiry(job, facts, now)
        or _termination(facts)
    )


def _platform_fault(job: Job, facts: Facts, now: datetime, settings: Settings) -> Outcome | None:
    # Rule 3a: FAILURE only when it is the platform's fault, never the user's program. The rows
    # of the contract's table in its order: the first row that a replica falls under wins.
    if job.spec is None:
        return _failure(Reason.INVALID_SPEC, f"the spec cannot be read: {job.spec_error}")
    for reason, falls_under in _PLATFORM_FAULTS:
        for rank in range(job.spec.replicas):
            message = falls_under(rank, facts, now, settings)
            if message is not None:
                return _failure(reason, message)
    if settings.forbid_privileged_templates and facts.policy_violations:
        return _failure(Reason.TEMPLATE_NOT_ALLOWED, "; ".join(facts.policy_violations))
    return None


# Each row: why replica `rank` cannot run (a message), or None when the row does not apply.
_Row = Callable[[int, "Facts", datetime, Settings], str | None]


def _pod_creation_failed(rank: int, facts: Facts, now: datetime, settings: Settings) -> str | None:
    refusal = facts.refused.get(rank)
    return f"replica {rank}: {refusal}" if refusal is not None else None


def _image_pull_failed(rank: int, facts: Facts, now: datetime, settings: Settings) -> str | None:
    pod = facts.pods.get(rank)
    if pod is None:
        return None
    if pod.waiting_reason in IMAGE_PULL_HOPELESS or (
        pod.waiting_reason in IMAGE_PULL_RETRYING and _waited_out(pod, now, settings)
    ):
        return f"{_where(rank, pod)}: {_waiting(pod)}"
    return None


def _container_create_failed(
    rank: int, facts: Facts, now: datetime, settings: Settings
) -> str | None:
    pod = facts.pods.get(rank)
    if pod is None:
        return None
    if pod.waiting_reason in CONTAINER_CREATE_RETRYING and _waited_out(pod, now, settings):
        return f"{_where(rank, pod)}: {_waiting(pod)}"
    return None


def _evicted(rank: int, facts: Facts, now: datetime, settings: Settings) -> str | None:
    pod = facts.pods.get(rank)
    if pod is None:
        return None
    if pod.reason == "Evicted" or (pod.disrupted and not _evicted_from_lost_node(pod, facts)):
        return f"{_where(rank, pod)} was evicted: {pod.message or 'no message'}"
    return None


def _node_lost(rank: int, facts: Facts, now: datetime, settings: Settings) -> str | None:
    pod = facts.pods.get(rank)
    if pod is None:
        return None
    where = _where(rank, pod)
    if _evicted_from_lost_node(pod, facts):
        return f"{where} was evicted from {_node_of(pod)}, which was lost"
    if pod.reason == "NodeLost" or pod.phase == "Unknown":
        return f"{where}: {_node_of(pod)} was lost"
    lost = _lost_node(pod, facts.nodes)
    if lost is not None and now - lost[1] >= settings.node_lost_grace:
        node, since = lost
        ago = int((now - since).total_seconds())
        return f"{where}: its node {node.name} stopped reporting {ago}s ago ({node.signal})"
    return None


def _kubelet_rejected(rank: int, facts: Facts, now: datetime, settings: Settings) -> str | None:
    pod = facts.pods.get(rank)
    # Failed before any container ran; not for its own deadline (rule 3b), an eviction or a
    # lost node (the rows above).
    if pod is None or pod.phase != "Failed" or pod.termination is not None:
        return None
    if pod.reason in ("DeadlineExceeded", "Evicted", "NodeLost") or pod.disrupted:
        return None
    detail = ": ".join(filter(None, (pod.reason, pod.message))) or "no reason given"
    return f"{_where(rank, pod)} was refused by the kubelet: {detail}"


def _pod_lost(rank: int, facts: Facts, now: datetime, settings: Settings) -> str | None:
    pod = facts.pods.get(rank)
    if pod is None:
        if rank in facts.lost_ranks:
            return f"replica {rank}: the pod vanished while the job was active"
        return None
    if pod.deleting and pod.active:
        return f"{_where(rank, pod)} was deleted while the job was active"
    return None


_PLATFORM_FAULTS: tuple[tuple[Reason, _Row], ...] = (
    (Reason.POD_CREATION_FAILED, _pod_creation_failed),
    (Reason.IMAGE_PULL_FAILED, _image_pull_failed),
    (Reason.CONTAINER_CREATE_FAILED, _container_create_failed),
    (Reason.EVICTED, _evicted),
    (Reason.NODE_LOST, _node_lost),
    (Reason.KUBELET_REJECTED, _kubelet_rejected),
    (Reason.POD_LOST, _pod_lost),
)


def _expiry(job: Job, facts: Facts, now: datetime) -> Outcome | None:
    # Rule 3b: the time allocation counts from startedAt; the kubelet's own pod deadline too.
    if facts.expires_at is not None and now >= facts.expires_at:
        deadline = job.spec.active_deadline_seconds if job.spec else None
        return Outcome(
            JobState.EXPIRED,
            Reason.DEADLINE_EXCEEDED,
            f"the time allocation of {deadline}s ran out",
            delete_active=True,
        )
    for rank, pod in sorted(facts.pods.items()):
        if pod.reason == "DeadlineExceeded":
            return Outcome(
                JobState.EXPIRED,
                Reason.DEADLINE_EXCEEDED,
                f"replica {rank} ({pod.name}) exceeded its activeDeadlineSeconds",
                delete_active=True,
            )
    return None


def _termination(facts: Facts) -> Outcome | None:
    # Rule 3c: the first replica to end ends the gang; an unsuccessful exit is still SUCCESS.
    ended = [(rank, pod) for rank, pod in sorted(facts.pods.items()) if pod.terminated]
    if not ended:
        return None
    failed = [(rank, pod) for rank, pod in ended if _exit_code(pod) != 0 or _signal(pod)]
    rank, pod = failed[0] if failed else ended[0]
    reason = Reason.NON_ZERO_EXIT if failed else Reason.COMPLETED
    return Outcome(
        JobState.SUCCESS, reason, f"replica {rank} ({pod.name}) {_ended(pod)}", delete_active=True
    )


def _running_or_queued(job: Job, facts: Facts) -> Outcome:
    # Rule 4: RUNNING needs every replica running (readiness is not required).
    replicas = job.spec.replicas if job.spec else 0
    running = facts.running
    counted = f"{running}/{replicas} replicas running"
    create = tuple(r for r in range(replicas) if r not in facts.created_ranks)
    if running == replicas:
        return Outcome(JobState.RUNNING, Reason.ALL_REPLICAS_RUNNING, counted)
    reason, message = _queue_reason(facts, counted)
    return Outcome(JobState.IN_QUEUE, reason, message, create_ranks=create)


def _queue_reason(facts: Facts, counted: str) -> tuple[Reason, str]:
    """The most telling reason a queued job waits: a gang the scheduler cannot place whole
    first (its pods then only repeat the group's verdict), then the replicas' own."""
    gang = facts.gang
    if gang is not None and gang.scheduled is False:
        detail = gang.message or "no message"
        if gang.reason not in ("", Reason.UNSCHEDULABLE):
            detail = f"{gang.reason}: {detail}"  # SchedulerError: the scheduler failed, not the fit
        return Reason.UNSCHEDULABLE, detail
    pods = [pod for _, pod in sorted(facts.pods.items())]
    for pod in pods:
        if pod.unschedulable:
            return Reason.UNSCHEDULABLE, pod.unschedulable
    for pod in pods:
        if pod.waiting_reason in IMAGE_PULL_RETRYING:
            return Reason.IMAGE_PULLING, f"{counted}; {pod.name}: {_waiting(pod)}"
    for pod in pods:
        if pod.waiting_reason in CONTAINER_CREATING | CONTAINER_CREATE_RETRYING:
            return Reason.CONTAINER_CREATING, f"{counted}; {pod.name}: {_waiting(pod)}"
    return Reason.WAITING_FOR_REPLICAS, counted


def _queued_first(job: Job, facts: Facts, outcome: Outcome) -> Outcome:
    # Every job is IN_QUEUE first (UCloud: IN_QUEUE means "has been created"), even when the
    # operator first sees it later (it was down, or could not write): the history then still
    # starts there, and the real outcome follows at once. The contract is silent on this.
    if job.status.state is not None or outcome.state is JobState.IN_QUEUE:
        return outcome
    replicas = job.spec.replicas if job.spec else 0
    message = f"{facts.running}/{replicas} replicas running"
    return Outcome(JobState.IN_QUEUE, Reason.WAITING_FOR_REPLICAS, message)


# --- the facts the rules read ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    pods: Mapping[int, ReplicaPod]  # observed replica pods of this job, by rank
    refused: Mapping[int, str]
    nodes: Mapping[str, NodeHealth]  # the replicas' nodes, as far as they are known
    created_ranks: frozenset[int]  # pods the operator created: recorded, observed or in flight
    lost_ranks: frozenset[int]  # created, recorded, and now gone
    running: int
    active_pods: tuple[ReplicaPod, ...]  # not yet terminated, deleting ones included
    expires_at: datetime | None
    policy_violations: tuple[str, ...]
    recheck_at: datetime | None
    gang: GangPlacement | None  # the verdict on this job's own PodGroup

    @staticmethod
    def gather(job: Job, observed: Observed, now: datetime, settings: Settings) -> Facts:
        replicas = job.spec.replicas if job.spec else 0
        pods = {rank: pod for rank, pod in observed.pods.items() if 0 <= rank < replicas}
        recorded = {entry.rank for entry in job.status.replica_statuses}
        lost = frozenset(recorded - pods.keys() - observed.creating)
        expires_at = expires_at_of(job, job.status.started_at)
        violations = job.template_violations if settings.forbid_privileged_templates else ()
        # A group left by an earlier job of the same name says nothing about this one.
        gang = observed.gang
        if gang is not None and gang.owner_uid != job.uid:
            gang = None
        return Facts(
            pods=pods,
            refused=observed.refused,
            nodes=observed.nodes,
            created_ranks=frozenset(recorded | pods.keys() | observed.creating),
            lost_ranks=lost,
            running=sum(1 for pod in pods.values() if pod.running),
            active_pods=tuple(pod for _, pod in sorted(pods.items()) if pod.active),
            expires_at=expires_at,
            policy_violations=violations,
            recheck_at=_recheck_at(pods.values(), observed.nodes, expires_at, now, settings),
            gang=gang,
        )


def _recheck_at(
    pods: Iterable[ReplicaPod],
    nodes: Mapping[str, NodeHealth],
    expires_at: datetime | None,
    now: datetime,
    settings: Settings,
) -> datetime | None:
    """The earliest future moment a rule could change its mind without any watch event."""
    moments = [expires_at] if expires_at is not None else []
    retrying = IMAGE_PULL_RETRYING | CONTAINER_CREATE_RETRYING
    for pod in pods:
        if pod.waiting_reason in retrying and pod.started_at is not None:
            moments.append(pod.started_at + settings.image_pull_grace)
        lost = _lost_node(pod, nodes)
        if lost is not None:
            moments.append(lost[1] + settings.node_lost_grace)
    future = [moment for moment in moments if moment > now]
    return min(future) if future else None


def _lost_node(
    pod: ReplicaPod, nodes: Mapping[str, NodeHealth]
) -> tuple[NodeHealth, datetime] | None:
    """The node of a replica still active, and since when, if it stopped reporting. A replica
    that already terminated on its own is not lost with its node (rule 3c tells its end)."""
    node = nodes.get(pod.node) if pod.node else None
    if node is None or node.lost_since is None or not pod.active:
        return None
    return node, node.lost_since


def _evicted_from_lost_node(pod: ReplicaPod, facts: Facts) -> bool:
    # The taint manager also evicts for NoExecute taints a user puts on a node: only on a node
    # not known to be healthy is its eviction the end of a lost node.
    if pod.disruption_reason != TAINT_EVICTION:
        return False
    node = facts.nodes.get(pod.node) if pod.node else None
    return node is None or node.lost


def _waited_out(pod: ReplicaPod, now: datetime, settings: Settings) -> bool:
    return pod.started_at is not None and now - pod.started_at >= settings.image_pull_grace


def _failure(reason: Reason, message: str) -> Outcome:
    return Outcome(JobState.FAILURE, reason, message, delete_active=True)


def _where(rank: int, pod: ReplicaPod) -> str:
    return f"replica {rank} ({pod.name})"


def _node_of(pod: ReplicaPod) -> str:
    return f"its node {pod.node}" if pod.node else "its node"


def _waiting(pod: ReplicaPod) -> str:
    return ": ".join(filter(None, (pod.waiting_reason, pod.waiting_message)))


def _exit_code(pod: ReplicaPod) -> int:
    return pod.termination.exit_code if pod.termination else 0


def _signal(pod: ReplicaPod) -> int | None:
    return pod.termination.signal if pod.termination else None


def _ended(pod: ReplicaPod) -> str:
    ended = pod.termination
    if ended is None:
        return "completed"
    text = f"exited with code {ended.exit_code}"
    if ended.signal:
        text += f" (signal {ended.signal})"
    if ended.reason and ended.reason != "Completed":
        text += f" ({ended.reason})"
    return text
