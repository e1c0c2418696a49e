"""The state rules of docs/semantics.md as one pure function.

    decide(job, observed, now, settings) -> Decision

`observed` holds the job's replica pods and, when the operator may read nodes, the health of the
nodes they run on (a node that stopped reporting is lost once the node-lost grace has passed).

Pure: no I/O, no kopf, no clock (time comes in as `now`). The rules are tried in the order of
semantics.md and the first that applies wins:

    1. final is final            _final_is_final
    2. cancel                    _cancel
    3. the job ends              _ending: a. platform fault  b. expiry  c. termination
    4. running or queued         _running_or_queued

Each rule returns an `Outcome` (the state it gives and what to do about pods); `decide` turns the
outcome into the next status, the event to emit and the time to look again. The function is total:
it never raises, whatever the pods look like.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .models import (
    MAX_UPDATES,
    Condition,
    JobState,
    Reason,
    ReplicaStatus,
    StatusUpdate,
    UCloudJobSpec,
    UCloudJobStatus,
)
from .nodes import NodeHealth
from .replicas import (
    CONTAINER_CREATE_RETRYING,
    CONTAINER_CREATING,
    IMAGE_PULL_HOPELESS,
    IMAGE_PULL_RETRYING,
    TAINT_EVICTION,
    ReplicaPod,
)

# Phases written in replicaStatuses besides the pod phases.
PHASE_MISSING = "Missing"  # the pod vanished while the job was active
PHASE_DELETED = "Deleted"  # the operator deleted the pod (cancel or a final state)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# An extra reason, for specs that reach the operator although the CRD refuses them
# (an old CRD, or validation switched off). semantics.md is silent on it.
INVALID_SPEC = "InvalidSpec"


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


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    status: UCloudJobStatus
    changed: bool  # the status differs in substance from the previous one: write it
    create_ranks: tuple[int, ...] = ()
    create_service: bool = False
    delete_pods: tuple[str, ...] = ()  # written status first, then these deletes
    delete_service: bool = False  # the gang's headless Service, sent with the final status
    event: Event | None = None
    recheck_at: datetime | None = None  # look again then, even without a watch event


@dataclass(frozen=True, slots=True)
class Outcome:
    state: JobState
    reason: str
    message: str
    create_ranks: tuple[int, ...] = ()
    delete_active: bool = False  # delete every replica pod still running or waiting


def decide(job: Job, observed: Observed, now: datetime, settings: Settings) -> Decision:
    """The next status of `job` and the actions that bring the cluster to it."""
    previous = job.status
    facts = _Facts.gather(job, observed, now, settings)
    outcome = (
        _final_is_final(previous)
        or _cancel(job, previous, facts)
        or _ending(job, facts, now, settings)
        or _running_or_queued(job, facts)
    )
    return _decision(job, facts, _queued_first(job, facts, outcome), now)


# --- the rules -------------------------------------------------------------------------------


def _final_is_final(previous: UCloudJobStatus) -> Outcome | None:
    # Rule 1: later pod events only refresh the replicas that ended on their own; leftover
    # pods are deleted.
    if previous.state is None or not previous.state.is_final:
        return None
    return Outcome(
        previous.state, previous.reason or "", previous.message or "", delete_active=True
    )


def _cancel(job: Job, previous: UCloudJobStatus, facts: _Facts) -> Outcome | None:
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


def _ending(job: Job, facts: _Facts, now: datetime, settings: Settings) -> Outcome | None:
    # Rule 3: FAILURE beats EXPIRED beats SUCCESS. The final state is written before the
    # remaining pods are deleted, so the reason is never guessed later from pods disappearing.
    return (
        _platform_fault(job, facts, now, settings)
        or _expiry(job, facts, now)
        or _termination(facts)
    )


def _platform_fault(job: Job, facts: _Facts, now: datetime, settings: Settings) -> Outcome | None:
    # Rule 3a: FAILURE only when it is the platform's fault, never the user's program.
    if job.spec is None:
        return _failure(INVALID_SPEC, f"the spec cannot be read: {job.spec_error}")
    if settings.forbid_privileged_templates and facts.policy_violations:
        return _failure(Reason.TEMPLATE_NOT_ALLOWED, "; ".join(facts.policy_violations))
    for rank in range(job.spec.replicas):
        fault = _replica_fault(rank, facts, now, settings)
        if fault is not None:
            return _failure(*fault)
    return None


def _replica_fault(
    rank: int, facts: _Facts, now: datetime, settings: Settings
) -> tuple[str, str] | None:
    """The rule-3a row that one replica falls under, if any."""
    if rank in facts.refused:
        return Reason.POD_CREATION_FAILED, f"replica {rank}: {facts.refused[rank]}"
    pod = facts.pods.get(rank)
    if pod is None:
        if rank in facts.lost_ranks:
            return Reason.POD_LOST, f"replica {rank}: the pod vanished while the job was active"
        return None
    where = f"replica {rank} ({pod.name})"
    node = facts.nodes.get(pod.node) if pod.node else None
    # The taint manager also evicts for NoExecute taints a user puts on a node: only on a node
    # not known to be healthy is its eviction the end of a lost node.
    if pod.disruption_reason == TAINT_EVICTION and (node is None or node.lost):
        return Reason.NODE_LOST, f"{where} was evicted from {_node_of(pod)}, which was lost"
    if pod.disrupted or pod.reason == "Evicted":
        return Reason.EVICTED, f"{where} was evicted: {pod.message or 'no message'}"
    if pod.reason == "NodeLost" or pod.phase == "Unknown":
        return Reason.NODE_LOST, f"{where}: {_node_of(pod)} was lost"
    lost = _lost_node(pod, facts.nodes)
    if lost is not None and now - lost[1] >= settings.node_lost_grace:
        lost_node, since = lost
        ago = int((now - since).total_seconds())
        return (
            Reason.NODE_LOST,
            f"{where}: its node {lost_node.name} stopped reporting {ago}s ago ({lost_node.signal})",
        )
    if pod.reason == "DeadlineExceeded":
        return None  # rule 3b: the pod's own deadline, an expiry
    if pod.phase == "Failed" and pod.termination is None:
        detail = ": ".join(filter(None, (pod.reason, pod.message))) or "no reason given"
        return Reason.KUBELET_REJECTED, f"{where} was refused by the kubelet: {detail}"
    waited_out = pod.started_at is not None and now - pod.started_at >= settings.image_pull_grace
    if pod.waiting_reason in IMAGE_PULL_HOPELESS or (
        pod.waiting_reason in IMAGE_PULL_RETRYING and waited_out
    ):
        return Reason.IMAGE_PULL_FAILED, f"{where}: {_waiting(pod)}"
    if pod.waiting_reason in CONTAINER_CREATE_RETRYING and waited_out:
        return Reason.CONTAINER_CREATE_FAILED, f"{where}: {_waiting(pod)}"
    if pod.deleting and pod.active:
        return Reason.POD_LOST, f"{where} was deleted while the job was active"
    return None


def _expiry(job: Job, facts: _Facts, now: datetime) -> Outcome | None:
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


def _termination(facts: _Facts) -> Outcome | None:
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


def _running_or_queued(job: Job, facts: _Facts) -> Outcome:
    # Rule 4: RUNNING needs every replica running (readiness is not required).
    replicas = job.spec.replicas if job.spec else 0
    running = facts.running
    counted = f"{running}/{replicas} replicas running"
    create = tuple(r for r in range(replicas) if r not in facts.created_ranks)
    if running == replicas:
        return Outcome(JobState.RUNNING, Reason.ALL_REPLICAS_RUNNING, counted)
    reason, message = _queue_reason(facts, counted)
    return Outcome(JobState.IN_QUEUE, reason, message, create_ranks=create)


def _queue_reason(facts: _Facts, counted: str) -> tuple[str, str]:
    """The most telling reason a queued job waits."""
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


def _queued_first(job: Job, facts: _Facts, outcome: Outcome) -> Outcome:
    # Every job is IN_QUEUE first (JobState.md: "has been created"), even when the operator
    # first sees it later (it was down, or could not write): the history then still starts
    # there, and the real outcome follows at once. semantics.md is silent on this.
    if job.status.state is not None or outcome.state is JobState.IN_QUEUE:
        return outcome
    replicas = job.spec.replicas if job.spec else 0
    message = f"{facts.running}/{replicas} replicas running"
    return Outcome(JobState.IN_QUEUE, Reason.WAITING_FOR_REPLICAS, message)


# --- the facts the rules read ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Facts:
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

    @staticmethod
    def gather(job: Job, observed: Observed, now: datetime, settings: Settings) -> _Facts:
        replicas = job.spec.replicas if job.spec else 0
        pods = {rank: pod for rank, pod in observed.pods.items() if 0 <= rank < replicas}
        recorded = {entry.rank for entry in job.status.replica_statuses}
        lost = frozenset(recorded - pods.keys() - observed.creating)
        expires_at = _expires_at(job, job.status.started_at)
        violations = job.template_violations if settings.forbid_privileged_templates else ()
        return _Facts(
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


# --- from outcome to decision ------------------------------------------------------------------


def _decision(job: Job, facts: _Facts, outcome: Outcome, now: datetime) -> Decision:
    previous = job.status
    now = now.replace(microsecond=0)
    entered = outcome.state is not previous.state
    was_final = previous.state is not None and previous.state.is_final
    started_at = previous.started_at
    if started_at is None and outcome.state is JobState.RUNNING:
        started_at = now
    replicas = job.spec.replicas if job.spec else previous.replicas
    status = UCloudJobStatus(
        state=outcome.state,
        reason=str(outcome.reason),
        message=outcome.message,
        replicas=replicas,
        # Pods this decision deletes no longer count as running.
        running_replicas=0 if outcome.delete_active else facts.running,
        started_at=started_at,
        # A finished job's allocation is history: a later deadline edit does not move it.
        expires_at=previous.expires_at if was_final else _expires_at(job, started_at),
        finished_at=(now if entered else previous.finished_at) if outcome.state.is_final else None,
        observed_generation=job.generation,
        conditions=_conditions(previous.conditions, outcome, job.generation, now),
        replica_statuses=_replica_statuses(job, facts, outcome),
        updates=_updates(previous.updates, outcome, now) if entered else previous.updates,
    )
    deletes = (
        tuple(pod.name for pod in facts.active_pods if not pod.deleting)
        if outcome.delete_active
        else ()
    )
    event = None
    if entered:
        was = previous.state.value if previous.state else "new"
        warning = outcome.state in (JobState.FAILURE, JobState.EXPIRED)
        event = Event(
            "Warning" if warning else "Normal",
            str(outcome.reason),
            f"{was} -> {outcome.state.value}: {outcome.message}",
        )
    active = not outcome.state.is_final
    gang = (replicas or 0) > 1
    return Decision(
        status=status,
        changed=essence(status) != essence(previous),
        create_ranks=outcome.create_ranks,
        create_service=bool(outcome.create_ranks) and gang,
        delete_pods=deletes,
        # A finished gang needs no DNS, and every Service left in a namespace costs the
        # scheduler and the endpoint controllers a selector match on each of its pod events.
        # Decided on the pass that enters the final state, which is repeated only if that
        # write fails: the Service is never looked up, and its delete is sent once per job.
        delete_service=entered and outcome.state.is_final and gang and bool(facts.created_ranks),
        event=event,
        recheck_at=facts.recheck_at if active else None,
    )


def _failure(reason: str, message: str) -> Outcome:
    return Outcome(JobState.FAILURE, reason, message, delete_active=True)


def _expires_at(job: Job, started_at: datetime | None) -> datetime | None:
    deadline = job.spec.active_deadline_seconds if job.spec else None
    if deadline is None or started_at is None:
        return None
    return started_at + timedelta(seconds=deadline)


def _conditions(
    previous: list[Condition], outcome: Outcome, generation: int, now: datetime
) -> list[Condition]:
    final = outcome.state.is_final
    wanted = [
        ("Running", outcome.state is JobState.RUNNING, str(outcome.reason)),
        ("Finished", final, outcome.state.value),
    ]
    before = {condition.type: condition for condition in previous}
    conditions = []
    for kind, true, reason in wanted:
        status = "True" if true else "False"
        old = before.get(kind)
        moved = old is None or old.status != status
        conditions.append(
            Condition(
                type=kind,
                status=status,
                reason=reason,
                message=outcome.message,
                last_transition_time=now if moved or old is None else old.last_transition_time,
                observed_generation=generation,
            )
        )
    return conditions


def _updates(previous: list[StatusUpdate], outcome: Outcome, now: datetime) -> list[StatusUpdate]:
    entry = StatusUpdate(
        timestamp=now, state=outcome.state, reason=str(outcome.reason), message=outcome.message
    )
    return [*previous, entry][-MAX_UPDATES:]


def _replica_statuses(job: Job, facts: _Facts, outcome: Outcome) -> list[ReplicaStatus]:
    """One entry per created replica: fresh from its pod, else the last one recorded."""
    recorded = {entry.rank: entry for entry in job.status.replica_statuses}
    # Gone while queued or running is a loss; gone while canceling or final is our own delete.
    was_active = job.status.state in (None, JobState.IN_QUEUE, JobState.RUNNING)
    entries = []
    for rank in sorted(facts.created_ranks | set(outcome.create_ranks)):
        pod = facts.pods.get(rank)
        entry = recorded.get(rank)
        if entry is not None and entry.phase == PHASE_DELETED:
            # The operator's delete is the replica's fate: how the pod then went away is not
            # news, and writing it would cost a patch per replica after every final state.
            entries.append(entry)
        elif pod is not None and outcome.delete_active and pod.active:
            entries.append(_replica_status(rank, pod).model_copy(update={"phase": PHASE_DELETED}))
        elif pod is not None:
            entries.append(_replica_status(rank, pod))
        elif entry is not None:
            if entry.phase not in TERMINAL_PHASES:
                gone = PHASE_MISSING if was_active else PHASE_DELETED
                entry = entry.model_copy(update={"phase": gone})
            entries.append(entry)
        else:  # just created (or about to be): not yet seen by the watch
            entries.append(ReplicaStatus(rank=rank, pod=f"{job.name}-{rank}", phase="Pending"))
    return entries


def _replica_status(rank: int, pod: ReplicaPod) -> ReplicaStatus:
    ended = pod.termination
    return ReplicaStatus(
        rank=rank,
        pod=pod.name,
        node=pod.node,
        phase=pod.phase or "Pending",
        exit_code=ended.exit_code if ended else None,
        signal=ended.signal if ended else None,
        reason=(ended.reason if ended else None) or pod.reason or pod.waiting_reason,
        message=(ended.message if ended else None) or pod.message or pod.waiting_message,
    )


def essence(status: UCloudJobStatus) -> tuple[object, ...]:
    """What makes a status worth writing: a pod's node or a waiting message alone is not."""
    replicas = tuple(
        (
            entry.rank,
            entry.pod,
            entry.phase if entry.phase in TERMINAL_PHASES else None,
            entry.exit_code,
            entry.signal,
        )
        for entry in status.replica_statuses
    )
    return (
        status.state,
        status.reason,
        status.message,
        status.replicas,
        status.running_replicas,
        status.started_at,
        status.expires_at,
        status.finished_at,
        status.observed_generation,
        tuple((c.type, c.status, c.reason) for c in status.conditions),
        replicas,
        len(status.updates),
        status.updates[-1] if status.updates else None,
    )


def _lost_node(
    pod: ReplicaPod, nodes: Mapping[str, NodeHealth]
) -> tuple[NodeHealth, datetime] | None:
    """The node of a replica still active, and since when, if it stopped reporting. A replica
    that already terminated on its own is not lost with its node (rule 3c tells its end)."""
    node = nodes.get(pod.node) if pod.node else None
    if node is None or node.lost_since is None or not pod.active:
        return None
    return node, node.lost_since


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
