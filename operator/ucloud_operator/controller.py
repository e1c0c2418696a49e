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
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .children import build_replica_pod, build_service
from .kube import JobApi, Refused, Transient
from .metrics import POD_EVENT_TO_STATUS, RECONCILE, RECONCILE_ERRORS, TRANSITIONS
from .models import UCloudJobStatus
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


class Controller:
    def __init__(
        self,
        api: JobApi,
        settings: Settings,
        jobs: Callable[[JobKey], Job | None],
        pods: Callable[[JobKey], Iterable[ReplicaPod]],
        *,
        nodes: Callable[[str], NodeHealth | None] = lambda name: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
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
        self._clock = clock
        self._leading = leading
        self._written: dict[JobKey, UCloudJobStatus] = {}  # ahead of the watch until it catches up
        self._creating: dict[JobKey, dict[int, float]] = {}  # rank -> monotonic expiry
        self._refused: dict[JobKey, dict[int, str]] = {}
        self._deleting: dict[JobKey, set[str]] = {}
        self._failures: dict[JobKey, int] = {}
        self._pod_event_at: dict[JobKey, float] = {}  # first pod event not yet written out
        self._batch_seconds = batch_seconds
        self._batch_due: dict[JobKey, float] = {}  # monotonic time a held-back change is written
        self._creations: dict[JobKey, asyncio.Task[None]] = {}  # pods being created, per job
        self._create_slots = asyncio.Semaphore(create_concurrency)  # pod POSTs in flight
        # Jobs whose pods are created at once: enough to keep the POSTs busy. The rest wait
        # their turn in arrival order, holding nothing: a burst of 10,000 jobs no longer makes
        # 10,000 tasks, each with its parsed job and pod bodies, alive at the same time.
        self._max_creating = max(2, create_concurrency)
        self._waiting_to_create: dict[JobKey, None] = {}  # an ordered set

    def enqueue(self, key: JobKey, pod_event: bool = False) -> None:
        if pod_event:
            self._pod_event_at.setdefault(key, time.monotonic())
        self.queue.add(key)

    def forget(self, key: JobKey) -> None:
        """The job is gone: drop everything kept for it."""
        for memory in (self._written, self._creating, self._refused, self._deleting):
            memory.pop(key, None)
        self._failures.pop(key, None)
        self._pod_event_at.pop(key, None)
        self._batch_due.pop(key, None)
        self._waiting_to_create.pop(key, None)
        self.queue.forget(key)

    def resync(self, keys: Iterable[JobKey]) -> None:
        """Leadership was (re)gained: forget what another leader may have overwritten, and look
        at every job again."""
        self._written.clear()
        self._deleting.clear()
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
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._retry_later(key, error)
            finally:
                self.queue.done(key)

    def _retry_later(self, key: JobKey, error: Exception) -> None:
        RECONCILE_ERRORS.inc()
        failures = self._failures[key] = self._failures.get(key, 0) + 1
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
        job = replace(seen, status=self._previous_status(key, seen))
        decision = decide(job, self._observe(key, job), self._clock(), self._settings)
        if decision.create_ranks:
            # Creating pods is the slow part under load: it runs beside the workers, so the
            # status of jobs already running never waits behind it. The status is written in
            # the pass after, once the pods exist: a recorded replica means a created pod.
            if len(self._creations) >= self._max_creating:
                self._waiting_to_create[key] = None  # requeued when a creation ends
                return decision
            self._waiting_to_create.pop(key, None)
            self._creations[key] = asyncio.create_task(
                self._create_then_requeue(key, job, decision), name=f"create {key[0]}/{key[1]}"
            )
            return decision
        held_back = decision.changed and self._held_back(key, job, decision)
        # A pod event waits for the write that answers it; events from now on start a new clock.
        pod_event_at = None if held_back else self._pod_event_at.pop(key, None)
        if decision.changed and not held_back:
            patch = merge_patch(job.status, decision.status)
            write = self._api.patch_status(job.namespace, job.name, patch)
            if decision.delete_service:
                # Sent together: the final state waits for no extra round trip, and a crash
                # can hardly fall between the two.
                await asyncio.gather(self._delete_service(key, job), write)
            else:
                await write
            self._written[key] = decision.status
            self._batch_due.pop(key, None)
            if pod_event_at is not None:
                POD_EVENT_TO_STATUS.observe(time.monotonic() - pod_event_at)
        if decision.event is not None:
            was = job.status.state.value if job.status.state else "new"
            TRANSITIONS.labels(was, decision.status.state, decision.event.reason).inc()
            await self._emit(key, job, decision)
            self.queue.add(key)  # a new state can enable the next rule: CANCELING -> SUCCESS
        await self._delete(key, job, decision.delete_pods)
        if decision.recheck_at is not None:
            self.queue.add_at(key, decision.recheck_at)
        return decision

    def _held_back(self, key: JobKey, job: Job, decision: Decision) -> bool:
        """Whether this change waits for the batch period (and the key is requeued for then).
        Level-triggered: the pass at the due time recomputes it from what is observed then."""
        urgent = (
            decision.event is not None
            or decision.status.observed_generation != job.status.observed_generation
        )
        if urgent or self._batch_seconds <= 0:
            return False
        now = time.monotonic()
        due = self._batch_due.setdefault(key, now + self._batch_seconds)
        if now >= due:
            return False
        self.queue.add_after(key, due - now)
        return True

    def _previous_status(self, key: JobKey, job: Job) -> UCloudJobStatus:
        written = self._written.get(key)
        if written is None:
            return job.status
        if job.status == written:
            del self._written[key]  # the watch has caught up
        return written

    def _observe(self, key: JobKey, job: Job) -> Observed:
        pods: dict[int, ReplicaPod] = {}
        for pod in self._pods(key):
            # Pods left by an earlier job of the same name belong to another owner uid.
            if pod.rank is not None and pod.owner_uid == job.uid:
                pods[pod.rank] = pod
        creating = self._creating.get(key)
        if creating:
            now = time.monotonic()
            for rank in [r for r, until in creating.items() if r in pods or until < now]:
                del creating[rank]
        deleting = self._deleting.get(key)
        if deleting:
            deleting &= {pod.name for pod in pods.values()}
        nodes: dict[str, NodeHealth] = {}
        for pod in pods.values():
            health = self._nodes(pod.node) if pod.node else None
            if health is not None:
                nodes[health.name] = health
        return Observed(
            pods=pods,
            creating=frozenset(creating or ()),
            refused=dict(self._refused.get(key, {})),
            nodes=nodes,
        )

    async def _create_then_requeue(self, key: JobKey, job: Job, decision: Decision) -> None:
        try:
            await self._create(key, job, decision)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._retry_later(key, error)
        else:
            self._failures.pop(key, None)
            self.queue.add(key)
        finally:
            del self._creations[key]
            if self._waiting_to_create:  # the next job's turn
                turn = next(iter(self._waiting_to_create))
                del self._waiting_to_create[turn]
                self.queue.add(turn)

    async def _create(self, key: JobKey, job: Job, decision: Decision) -> None:
        assert job.spec is not None  # rule 3a fails jobs without a readable spec
        if decision.create_service:
            try:
                await self._create_one(build_service(job.namespace, job.name, job.uid))
            except Refused as error:
                _log(key).warning("the headless Service was refused: %s", error)
        ranks = decision.create_ranks
        bodies = [build_replica_pod(job.namespace, job.name, job.uid, job.spec, r) for r in ranks]
        results = await asyncio.gather(
            *(self._create_one(body) for body in bodies), return_exceptions=True
        )
        until = time.monotonic() + CREATE_EXPECTATION_SECONDS
        transient: BaseException | None = None
        for rank, result in zip(ranks, results, strict=True):
            if result is None:
                self._creating.setdefault(key, {})[rank] = until
            elif isinstance(result, Refused):
                self._refused.setdefault(key, {})[rank] = str(result)
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

    async def _delete_service(self, key: JobKey, job: Job) -> None:
        try:
            await self._api.delete_service(job.namespace, job.name)
        except (Refused, Transient) as error:
            # Only a cost to the cluster: the job's deletion still takes the Service with it.
            _log(key).warning("could not delete the headless Service: %s", error)

    async def _delete(self, key: JobKey, job: Job, names: tuple[str, ...]) -> None:
        if not names:
            return  # most passes: no set kept per job for nothing
        deleting = self._deleting.setdefault(key, set())
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


def merge_patch(previous: UCloudJobStatus, status: UCloudJobStatus) -> dict[str, Any]:
    """The whole new status, with null for each field it no longer has."""
    fresh = status.to_wire()
    gone = {key: None for key in previous.to_wire() if key not in fresh}
    return {**gone, **fresh}


def _log(key: JobKey) -> logging.LoggerAdapter[logging.Logger]:
    namespace, name = key
    ref = {"apiVersion": "ucloud.dk/v1", "kind": "UCloudJob", "namespace": namespace, "name": name}
    return logging.LoggerAdapter(logger, {"k8s_ref": ref, "k8s_skip": True})
