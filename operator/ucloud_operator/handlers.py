"""The kopf shell: watches, two in-memory indices, and a controller fed with job keys.

kopf only watches here. It indexes UCloudJobs and their replica pods (compact summaries, never
whole bodies) and turns every event into a job key for the controller's work queue. No
change-detecting handlers, daemons, timers or finalizers: kopf writes nothing on jobs or pods.
kopf holds back the event handlers until both indices are filled, so no job is reconciled before
its pods are known.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from kubernetes import client

from .controller import Controller, JobKey
from .http import Check, Server, watchers_alive
from .jobs import ParsedJobs, StoredJob
from .kube import KubeApi, load_client_config
from .leader import LeaderElector
from .metrics import (
    LEADER,
    QUEUE_DEPTH,
    REGISTRY,
    WATCH_EVENTS,
    JobsByState,
    measure_event_loop_lag,
)
from .models import GROUP, JOB_NAME_LABEL, PLURAL, VERSION
from .replicas import ReplicaPod, observe
from .settings import OperatorSettings
from .state import Job

logger = logging.getLogger(__name__)

registry = kopf.OperatorRegistry()
_REPLICA_POD_LABELS: dict[str, Any] = {JOB_NAME_LABEL: kopf.PRESENT}


class SharedMemo(kopf.Memo):
    """The operator's memo. kopf gives every object it sees a shallow copy of the memo; this
    one is shared instead (nothing per object is kept in it), which saves a dict per pod."""

    def __copy__(self) -> SharedMemo:
        return self


class Runtime:
    """What the handlers share, passed to kopf as the operator's memo (`SharedMemo`)."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.controller: Controller | None = None
        self.api: KubeApi | None = None
        self.task: asyncio.Task[None] | None = None
        self.server: Server | None = None
        self.jobs_by_state: JobsByState | None = None
        self.elector: LeaderElector | None = None
        self.lease_task: asyncio.Task[None] | None = None
        self.lag_task: asyncio.Task[None] | None = None

    def healthy(self) -> Check:
        """Alive: the sync loop runs and kopf's watchers have not ended."""
        watchers = watchers_alive((PLURAL, "pods"))
        loop_ok = self.task is not None and not self.task.done()
        return Check(watchers.ok and loop_ok, {**watchers.detail, "controller": loop_ok})

    def ready(self) -> Check:
        """Ready: started, and both watches are up (kopf fills the indices before any pass)."""
        return self.healthy()


@kopf.index(GROUP, VERSION, PLURAL, registry=registry)
async def ucloud_jobs(body: kopf.Body, **_: Any) -> dict[JobKey, StoredJob]:
    job = StoredJob.of(body)
    return {(job.namespace, job.name): job}


@kopf.index("", "v1", "pods", registry=registry, labels=_REPLICA_POD_LABELS)
async def replica_pods(body: kopf.Body, **_: Any) -> dict[JobKey, ReplicaPod]:
    pod = observe(body)
    return {(pod.namespace, pod.job_name): pod}


@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
async def job_changed(type: str, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    controller: Controller = memo.runtime.controller
    key = (namespace or "", name)
    if type == "DELETED":
        controller.forget(key)
    else:
        controller.enqueue(key)
    WATCH_EVENTS.labels(PLURAL).inc()


@kopf.on.event("", "v1", "pods", registry=registry, labels=_REPLICA_POD_LABELS)
async def pod_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    memo.runtime.controller.enqueue((namespace or "", labels[JOB_NAME_LABEL]), pod_event=True)
    WATCH_EVENTS.labels("pods").inc()


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # The service account in a cluster, else the kubeconfig: the same as the controller's client.
    info = kopf.login_with_service_account(**kwargs)
    return info if info is not None else kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup(registry=registry)
async def start(settings: kopf.OperatorSettings, memo: Any, **indices: Any) -> None:
    runtime: Runtime = memo.runtime
    # kopf passes each index as a keyword named after its function.
    ucloud_jobs: kopf.Index[JobKey, StoredJob] = indices["ucloud_jobs"]
    replica_pods: kopf.Index[JobKey, ReplicaPod] = indices["replica_pods"]
    configure_kopf(settings, runtime.settings)

    parsed = ParsedJobs()

    def job(key: JobKey) -> Job | None:
        store = ucloud_jobs.get(key)
        stored = next(iter(store), None) if store is not None else None
        return parsed.job(stored) if stored is not None else None

    def pods(key: JobKey) -> Iterable[ReplicaPod]:
        return replica_pods.get(key, ())

    ours = runtime.settings
    configuration = load_client_config()
    runtime.api = KubeApi(configuration, ours.api_concurrency, ours.instance)
    await runtime.api.start()

    def resync() -> None:
        if runtime.controller is not None:
            runtime.controller.resync(list(ucloud_jobs.keys()))

    def leading() -> bool:
        return runtime.elector is None or runtime.elector.is_leader

    if ours.leader_elect:
        runtime.elector = LeaderElector(
            client.ApiClient(configuration),
            ours.lease_namespace,
            ours.lease_name,
            ours.instance,
            on_started_leading=resync,
        )
        runtime.lease_task = asyncio.create_task(runtime.elector.run(), name="leader election")
    runtime.controller = Controller(
        runtime.api,
        ours.rules,
        job,
        pods,
        leading=leading,
        create_concurrency=max(1, ours.api_concurrency // 2),  # the rest for status writes
    )
    LEADER.set_function(lambda: 1.0 if leading() else 0.0)
    runtime.task = asyncio.create_task(runtime.controller.run(ours.workers), name="controller")
    QUEUE_DEPTH.set_function(lambda: len(runtime.controller.queue) if runtime.controller else 0)
    runtime.jobs_by_state = JobsByState(
        lambda: (job.state for store in ucloud_jobs.values() for job in store)
    )
    REGISTRY.register(runtime.jobs_by_state)
    runtime.lag_task = asyncio.create_task(measure_event_loop_lag(), name="event-loop lag")
    runtime.server = Server(runtime.healthy, runtime.ready)
    await runtime.server.start(ours.metrics_address, ours.health_address)
    # What exists now (modules, clients, kopf's machinery) lives as long as the process: out of
    # the collector's reach, a full collection only scans what jobs and pods add, which keeps
    # its pauses of the event loop short.
    gc.collect()
    gc.freeze()


@kopf.on.cleanup(registry=registry)
async def stop(memo: Any, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    if runtime.server is not None:
        await runtime.server.stop()
    if runtime.jobs_by_state is not None:
        REGISTRY.unregister(runtime.jobs_by_state)
    for task in (runtime.task, runtime.lease_task, runtime.lag_task):
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if runtime.elector is not None:
        await runtime.elector.release()
    if runtime.api is not None:
        await runtime.api.close()


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    settings.peering.standalone = True  # one replica, Recreate: no peering objects to freeze on
    settings.scanning.disabled = True  # no cluster-wide list of CRDs and namespaces needed
    settings.posting.enabled = False  # the controller posts its own events, one per change
    # Only replica pods leave the API server: never stream every pod of the cluster.
    settings.watching.label_selectors["", "v1", "pods"] = JOB_NAME_LABEL
    settings.watching.server_timeout = 300
    # An idle per-object worker holds its object's last event (a whole pod body) until it exits:
    # after 0.5 s, not kopf's 5 s, a full collection under load scans half as many objects.
    settings.queueing.idle_timeout = 0.5
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Nothing of kopf's is written on jobs or pods; if it ever were, it would carry our prefix.
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf deep-copies every event's body to diff it for change-detecting handlers; this
    operator has none (index and event handlers only), so the copy is skipped: it was about a
    tenth of the operator's CPU under load. It stores and fetches nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
