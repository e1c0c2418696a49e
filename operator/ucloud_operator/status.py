"""From the outcome of the rules to the next status: the status builder.

`rules.decide` picks the state, its reason and what to do about pods; `build_decision` writes the
status that goes with it (counts, times, conditions, replica entries, the history), the event of a
state change and the time to look again. Pure, as the rules are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .models import (
    MAX_UPDATES,
    Condition,
    JobState,
    ReplicaStatus,
    StatusUpdate,
    UCloudJobStatus,
)
from .replicas import ReplicaPod

if TYPE_CHECKING:  # rules.py builds its decisions here
    from .rules import Facts, Job, Outcome

# Phases written in replicaStatuses besides the pod phases.
PHASE_MISSING = "Missing"  # the pod vanished while the job was active
PHASE_DELETED = "Deleted"  # the operator deleted the pod (cancel or a final state)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


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
    # The gang's own objects: its headless Service and, under gang admission, its PodGroup.
    create_gang: bool = False  # created before its pods
    delete_pods: tuple[str, ...] = ()  # written status first, then these deletes
    delete_gang: bool = False  # sent with the final status
    event: Event | None = None
    recheck_at: datetime | None = None  # look again then, even without a watch event


def expires_at_of(job: Job, started_at: datetime | None) -> datetime | None:
    """startedAt + activeDeadlineSeconds, when both are known."""
    deadline = job.spec.active_deadline_seconds if job.spec else None
    if deadline is None or started_at is None:
        return None
    return started_at + timedelta(seconds=deadline)


def build_decision(job: Job, facts: Facts, outcome: Outcome, now: datetime) -> Decision:
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
        expires_at=previous.expires_at if was_final else expires_at_of(job, started_at),
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
        create_gang=bool(outcome.create_ranks) and gang,
        delete_pods=deletes,
        # A finished gang needs no DNS nor placement, and every Service left in a namespace costs
        # the scheduler and the endpoint controllers a selector match on each of its pod events.
        # Decided on the pass that enters the final state, which is repeated only if that
        # write fails: the objects are never looked up, and their deletes sent once per job.
        delete_gang=entered and outcome.state.is_final and gang and bool(facts.created_ranks),
        event=event,
        recheck_at=facts.recheck_at if active else None,
    )


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


def _replica_statuses(job: Job, facts: Facts, outcome: Outcome) -> list[ReplicaStatus]:
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
