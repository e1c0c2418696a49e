"""The sync loop: for one job key, observe, `decide`, then act on the decision.

Level-triggered: every pass recomputes the status from the job, its pods and their nodes (the
in-memory indices fed by the watches) and the last status; nothing is kept as a diff of events.
The controller is the only writer of `status`. Keys come from a `WorkQueue`, so a job is never
reconciled by two workers at once and a burst of pod events becomes one pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from .children import build_pod_group, build_replica_pod, build_service
from .gangs import GangPlacement
from .kube import JobApi, Refused, Transient
from .metrics import POD_EVENT_TO_STATUS, RECONCILE, RECONCILE_ERRORS, TRANSITIONS
from .models import GROUP, KIND, VERSION, UCloudJobStatus
from .nodes import NodeHealth
from .replicas import ReplicaPod
from .rules import Job, Observed, Settings, decide
from .status import Decision
from .workqueue import WorkQueue

logger = logging.getLogger(__name__)

JobKey = tuple[str, str]  # (namespace, name)

# How long a created pod may stay unseen by the watch before it counts as lost (client-go's
# ControllerExpectations use the same five minutes).
CREATE_EXPECTATION_SECONDS = 300.0
MAX_RETRY_DELAY_SECONDS = 300.0
# A status change that is no new state (runningReplicas, a reason, a replica's fate) waits this
# long, so the pod events of a gang coming up end in one patch: the Job controller batches its
# pod-driven syncs the same way (SyncJobBatchPeriod, also 1 s). New states are written at once.
STATUS_BATCH_SECONDS = 1.0


@dataclass(slots=True)
class JobRecord:
    """What the controller keeps of one job between passes, forgotten with it (`forget`).
    Containers are made when first needed: most jobs at rest need none."""

    written: UCloudJobStatus | None = (
        None  # the status written, ahead of the watch until it catches up
    )
    creating: dict[int, float] | None = None  # rank -> monotonic time it may stay unseen until
    refused: dict[int, str] | None = None  # rank -> the API server's refusal
    deleting: set[str] | None = None  # pods whose delete was sent
    failures: int = 0  # passes failed in a row: the retry backoff
    pod_event_at: float | None = None  # the first pod event not yet answered by a write
    batch_due: float | None = None  # when a held-back change is written


class Controller:
    def __init__(
        self,
        api: JobApi,
        settings: Settings,
        jobs: Callable[[JobKey], Job | None],
        pods: Callable[[JobKey], Iterable[ReplicaPod]],
        *,
        nodes: Callable[[str], NodeHealth | None] = lambda name: None,
        gangs: Callable[[JobKey], GangPlacement | None] = lambda key: None,
        gang_version: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        leading: Callable[[], bool] = lambda: True,
        batch_seconds: float = STATUS_BATCH_SECONDS,
        create_concurrency: int = 16,
    ) -> None:
        self.queue: WorkQueue[JobKey] = WorkQueue()
        self._api = api
        self._settings = settings
        self._jobs = jobs
        self._pods = pods
        self._nodes = nodes
        self._gangs = gangs
        # The scheduling.k8s.io version of PodGroups under gang admission; None: it is off.
        self._gang_version = gang_version
        self._clock = clock
        self._monotonic = monotonic
        self._leading = leading
        self._records: dict[JobKey, JobRecord] = {}
        self._batch_seconds = batch_seconds
        self._create_slots = asyncio.Semaphore(create_concurrency)  # pod POSTs in flight
        # Jobs whose pods are created at once: enough to keep the POSTs busy. The rest wait
        # their turn in arrival order, holding nothing: a burst of 10,000 jobs no longer makes
        # 10,000 tasks, each with its parsed job and pod bodies, alive at the same time.
        self._max_creating = max(2, create_concurrency)
        self._creations: dict[JobKey, asyncio.Task[None]] = {}  # pods being created, per job
        self._turns: dict[JobKey, None] = {}  # jobs waiting for a creation slot: an ordered set

    def enqueue(self, key: JobKey, pod_event: bool = False) -> None:
        if pod_event:
            record = self._record(key)
            if record.pod_event_at is None:
                record.pod_event_at = self._monotonic()
        self.queue.add(key)

    def _record(self, key: JobKey) -> JobRecord:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = JobRecord()
        return record

    def forget(self, key: JobKey) -> None:
        """The job is gone: drop everything kept for it. (A creation still running ends on its
        own, into the dropped record, and its requeue finds the job gone.)"""
        self._records.pop(key, None)
        self._turns.pop(key, None)
        self.queue.forget(key)

    def resync(self, keys: Iterable[JobKey]) -> None:
        """Leadership was (re)gained: forget what another leader may have overwritten, and look
        at every job again."""
        for record in self._records.values():
            record.written = None
            record.deleting = None
        for key in keys:
            self.queue.add(key)

    async def run(self, workers: int) -> None:
        await asyncio.gather(*(self._worker() for _ in range(workers)))

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                if not self._leading():
                    continue  # a standby keeps its indices warm; resync() requeues on takeover
                await self.reconcile(key)
                self._succeeded(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._retry_later(key, error)
            finally:
                self.queue.done(key)

    def _succeeded(self, key: JobKey) -> None:
        record = self._records.get(key)
        if record is not None:
            record.failures = 0

    def _retry_later(self, key: JobKey, error: Exception) -> None:
        RECONCILE_ERRORS.inc()
        record = self._record(key)
        record.failures += 1
        failures = record.failures
        delay = min(MAX_RETRY_DELAY_SECONDS, 0.5 * 2**failures)
        level = logging.WARNING if isinstance(error, Transient | Refused) else logging.ERROR
        _log(key).log(
            level,
            "reconcile failed (retry in %.1fs): %s",
            delay,
            error,
            exc_info=level == logging.ERROR,
        )
        self.queue.add_after(key, delay)

    def creation(self, key: JobKey) -> asyncio.Task[None] | None:
        """The task creating the job's pods, while there is one."""
        return self._creations.get(key)

    async def reconcile(self, key: JobKey) -> Decision | None:
        with RECONCILE.time():
            return await self._reconcile(key)

    async def _reconcile(self, key: JobKey) -> Decision | None:
        if key in self._creations:
            return None  # the creating task requeues the job once its pods exist
        seen = self._jobs(key)
        if seen is None:
            self.forget(key)
            return None
        record = self._record(key)
        job = replace(seen, status=self._previous_status(record, seen))
        decision = decide(job, self._observe(record, job), self._clock(), self._settings)
        if decision.create_ranks:
            # Creating pods is the slow part under load: it runs beside the workers, so the
            # status of jobs already running never waits behind it. The status is written in
            # the pass after, once the pods exist: a recorded replica means a created pod.
            if len(self._creations) >= self._max_creating:
                self._turns[key] = None  # requeued when a creation ends
                return decision
            self._turns.pop(key, None)
            self._creations[key] = asyncio.create_task(
                self._create_then_requeue(key, record, job, decision),
                name=f"create {key[0]}/{key[1]}",
            )
            return decision
        held_back = decision.changed and self._held_back(key, record, job, decision)
        # A pod event waits for the write that answers it; events from now on start a new clock.
        pod_event_at = None
        if not held_back:
            pod_event_at, record.pod_event_at = record.pod_event_at, None
        if decision.changed and not held_back:
            patch = merge_patch(job.status, decision.status)
            write = self._api.patch_status(job.namespace, job.name, patch)
            if decision.delete_gang:
                # Sent together: the final state waits for no extra round trip, and a crash
                # can hardly fall between the two.
                await asyncio.gather(*self._delete_gang(key, job), write)
            else:
                await write
            record.written = decision.status
            record.batch_due = None
            if pod_event_at is not None:
                POD_EVENT_TO_STATUS.observe(self._monotonic() - pod_event_at)
        if decision.event is not None:
            was = job.status.state.value if job.status.state else "new"
            TRANSITIONS.labels(was, decision.status.state, decision.event.reason).inc()
            await self._emit(key, job, decision)
            self.queue.add(key)  # a new state can enable the next rule: CANCELING -> SUCCESS
        await self._delete(record, job, decision.delete_pods)
        if decision.recheck_at is not None:
            self.queue.add_at(key, decision.recheck_at)
        return decision

    def _held_back(self, key: JobKey, record: JobRecord, job: Job, decision: Decision) -> bool:
        """Whether this change waits for the batch period (and the key is requeued for then).
        Level-triggered: the pass at the due time recomputes it from what is observed then."""
        urgent = (
            decision.event is not None
            or decision.status.observed_generation != job.status.observed_generation
        )
        if urgent or self._batch_seconds <= 0:
            return False
        now = self._monotonic()
        if record.batch_due is None:
            record.batch_due = now + self._batch_seconds
        due = record.batch_due
        if now >= due:
            return False
        self.queue.add_after(key, due - now)
        return True

    def _previous_status(self, record: JobRecord, job: Job) -> UCloudJobStatus:
        written = record.written
        if written is None:
            return job.status
        if job.status == written:
            record.written = None  # the watch has caught up
        return written

    def _observe(self, record: JobRecord, job: Job) -> Observed:
        pods: dict[int, ReplicaPod] = {}
        for pod in self._pods((job.namespace, job.name)):
            # Pods left by an earlier job of the same name belong to another owner uid.
            if pod.rank is not None and pod.owner_uid == job.uid:
                pods[pod.rank] = pod
        creating = record.creating
        if creating:
            now = self._monotonic()
            for rank in [r for r, until in creating.items() if r in pods or until < now]:
                del creating[rank]
        if record.deleting:
            record.deleting &= {pod.name for pod in pods.values()}
        nodes: dict[str, NodeHealth] = {}
        for pod in pods.values():
            health = self._nodes(pod.node) if pod.node else None
            if health is not None:
                nodes[health.name] = health
        return Observed(
            pods=pods,
            creating=frozenset(creating or ()),
            refused=dict(record.refused or {}),
            nodes=nodes,
            gang=self._gangs((job.namespace, job.name)) if self._gang_version else None,
        )

    async def _create_then_requeue(
        self, key: JobKey, record: JobRecord, job: Job, decision: Decision
    ) -> None:
        try:
            await self._create(key, record, job, decision)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._retry_later(key, error)
        else:
            record.failures = 0
            self.queue.add(key)
        finally:
            del self._creations[key]
            if self._turns:  # the next job's turn
                turn = next(iter(self._turns))
                del self._turns[turn]
                self.queue.add(turn)

    async def _create(self, key: JobKey, record: JobRecord, job: Job, decision: Decision) -> None:
        assert job.spec is not None  # rule 3a fails jobs without a readable spec
        ranks = decision.create_ranks
        pod_group = None
        if decision.create_gang:
            try:
                await self._create_one(build_service(job.namespace, job.name, job.uid))
            except Refused as error:
                _log(key).warning("the headless Service was refused: %s", error)
            if self._gang_version is not None:
                group = build_pod_group(
                    job.namespace, job.name, job.uid, job.spec, self._gang_version
                )
                try:
                    await self._create_one(group)  # before its pods: none is placed alone
                except Refused as error:
                    # No pod without its group: the refusal fails the job (PodCreationFailed).
                    if record.refused is None:
                        record.refused = {}
                    for rank in ranks:
                        record.refused[rank] = f"its PodGroup was refused: {error}"
                    return
                pod_group = job.name
        bodies = [
            build_replica_pod(job.namespace, job.name, job.uid, job.spec, r, pod_group=pod_group)
            for r in ranks
        ]
        results = await asyncio.gather(
            *(self._create_one(body) for body in bodies), return_exceptions=True
        )
        until = self._monotonic() + CREATE_EXPECTATION_SECONDS
        transient: BaseException | None = None
        for rank, result in zip(ranks, results, strict=True):
            if result is None:
                if record.creating is None:
                    record.creating = {}
                record.creating[rank] = until
            elif isinstance(result, Refused):
                if record.refused is None:
                    record.refused = {}
                record.refused[rank] = str(result)
            else:
                transient = result
        if transient is not None:
            raise transient  # the ranks still missing are created on the retry

    async def _create_one(self, body: dict[str, Any]) -> None:
        async with self._create_slots:  # leave connections free for status writes
            await self._api.create(body)

    async def _emit(self, key: JobKey, job: Job, decision: Decision) -> None:
        event = decision.event
        assert event is not None
        _log(key).info("%s", event.message)
        try:
            await self._api.emit_event(job.namespace, job.name, job.uid, event)
        except (Refused, Transient) as error:
            # The status already holds the change; a lost event must not stall the job.
            _log(key).warning("could not post the event: %s", error)

    def _delete_gang(self, key: JobKey, job: Job) -> list[Awaitable[None]]:
        """The deletes of the gang's Service and PodGroup, to send beside the final write."""
        deletes = [self._api.delete_service(job.namespace, job.name)]
        if self._gang_version is not None:
            deletes.append(self._api.delete_pod_group(job.namespace, job.name, self._gang_version))
        return [_only_warn(key, delete) for delete in deletes]

    async def _delete(self, record: JobRecord, job: Job, names: tuple[str, ...]) -> None:
        if not names:
            return  # most passes: no set kept per job for nothing
        if record.deleting is None:
            record.deleting = set()
        deleting = record.deleting
        wanted = [name for name in names if name not in deleting]
        if not wanted:
            return
        deleting.update(wanted)
        results = await asyncio.gather(
            *(self._api.delete_pod(job.namespace, name) for name in wanted), return_exceptions=True
        )
        failed = [(n, r) for n, r in zip(wanted, results, strict=True) if r is not None]
        deleting.difference_update(name for name, _ in failed)
        if failed:
            raise failed[0][1]  # retried with backoff; the others went through


async def _only_warn(key: JobKey, delete: Awaitable[None]) -> None:
    try:
        await delete
    except (Refused, Transient) as error:
        # Only a cost to the cluster: the job's deletion still takes its children with it.
        _log(key).warning("could not delete the gang's objects: %s", error)


def merge_patch(previous: UCloudJobStatus, status: UCloudJobStatus) -> dict[str, Any]:
    """The whole new status, with null for each field it no longer has."""
    fresh = status.to_wire()
    gone = {key: None for key in previous.to_wire() if key not in fresh}
    return {**gone, **fresh}


def _log(key: JobKey) -> logging.LoggerAdapter[logging.Logger]:
    """This module's logger, with the job attached the way kopf's public `ObjectLogger` attaches
    its object: kopf's formatters then prefix text lines with it and put it under "job" in JSON
    lines (`kopf.configure(log_refkey="job")`)."""
    namespace, name = key
    metadata = {"namespace": namespace, "name": name}
    body: dict[str, object] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
    }
    adapter = kopf.ObjectLogger(body=kopf.Body(cast(kopf.RawBody, body)), settings=_LOG_SETTINGS)
    adapter.logger = logger  # kopf's adapter, this module's logger and level
    return adapter


# kopf posts the lines of its object loggers as Kubernetes Events unless told not to: the
# controller posts its own, one per state change.
_LOG_SETTINGS = kopf.OperatorSettings()
_LOG_SETTINGS.posting.enabled = False
