"""The kopf shell: the UCloudJob watch and index, the pod and node informers, and a controller fed
with job keys.

kopf watches and indexes UCloudJobs (compact records, never whole bodies) and turns every event
into a job key for the controller's work queue; the replica pods, most of the events, come
through `informer.PodInformer`, and the nodes' health through `informer.NodeInformer` (a node
that stops or starts reporting queues the jobs with a replica on it). Under gang admission,
`informer.GangInformer` brings the scheduler's verdict on each gang's PodGroup. No change-detecting
handlers, daemons, timers or finalizers: kopf writes nothing on jobs or pods. kopf holds back the
job events until the job index is filled and the controller waits for the pods' and nodes' first
list, so no job is reconciled before its pods are known."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from typing import Any

import kopf
from kubernetes import client

from . import gangs
from .controller import Controller, JobKey
from .http import Check, Server
from .informer import GangIndex, GangInformer, NodeIndex, NodeInformer, PodIndex, PodInformer
from .jobs import ParsedJobs, StoredJob
from .kopf_internals import watchers_alive
from .kube import KubeApi, load_client_config
from .leader import KubernetesLeaseApi, LeaderElector
from .metrics import (
    GANG_ADMISSION,
    LEADER,
    NODE_FACTS,
    QUEUE_DEPTH,
    REGISTRY,
    WATCH_EVENTS,
    JobsByState,
    measure_event_loop_lag,
)
from .metrics_auth import Authorizer, SecureMetrics, ServingCert
from .models import GROUP, PLURAL, VERSION
from .rules import Job
from .settings import OperatorSettings

logger = logging.getLogger(__name__)

registry = kopf.OperatorRegistry()


class Runtime:
    """What the handlers share, handed to kopf in the operator's memo (`memo.runtime`)."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.controller: Controller | None = None
        self.api: KubeApi | None = None
        self.task: asyncio.Task[None] | None = None
        self.server: Server | None = None
        self.jobs_by_state: JobsByState | None = None
        self.elector: LeaderElector | None = None
        self.lease_api: KubernetesLeaseApi | None = None
        self.lease_task: asyncio.Task[None] | None = None
        self.lag_task: asyncio.Task[None] | None = None
        self.informers: list[PodInformer] = []
        self.gang_informers: list[GangInformer] = []  # under gang admission
        self.informer_tasks: list[asyncio.Task[None]] = []
        self.node_informer: NodeInformer | None = None
        self.node_task: asyncio.Task[None] | None = None

    def start_pod_informers(self, api: KubeApi, index: PodIndex, controller: Controller) -> None:
        """One informer per watched namespace, or one for all; each change queues the job."""

        def changed(key: JobKey) -> None:
            controller.enqueue(key, pod_event=True)

        self.informers = [
            PodInformer(api, index, namespace, changed)
            for namespace in (self.settings.namespaces or (None,))
        ]
        self.informer_tasks = [
            asyncio.create_task(informer.run(), name=f"pod informer {informer.scope}")
            for informer in self.informers
        ]

    def start_gang_informers(
        self, api: KubeApi, index: GangIndex, version: str, controller: Controller
    ) -> None:
        """Under gang admission: the jobs' PodGroups, as the pods are watched."""
        self.gang_informers = [
            GangInformer(api, index, namespace, version, controller.enqueue)
            for namespace in (self.settings.namespaces or (None,))
        ]
        self.informer_tasks += [
            asyncio.create_task(informer.run(), name=f"podgroup informer {informer.scope}")
            for informer in self.gang_informers
        ]

    def start_node_informer(
        self, api: KubeApi, nodes: NodeIndex, pods: PodIndex, controller: Controller
    ) -> None:
        """One informer for the cluster's nodes; a node that stops or starts reporting queues
        every job with a replica on it."""

        def changed(node: str) -> None:
            for key in pods.jobs_on_node(node):
                controller.enqueue(key)

        self.node_informer = NodeInformer(api, nodes, changed)
        self.node_task = asyncio.create_task(self.node_informer.run(), name="node informer")

    def node_facts(self) -> bool:
        """The nodes are listed and readable: lost nodes are told from them."""
        informer = self.node_informer
        return informer is not None and informer.synced.is_set() and informer.forbidden is None

    async def run_controller(self, controller: Controller, workers: int) -> None:
        """The sync loop, once every informer has its first list: no pass sees a job without
        the pods it already has, or their nodes (a node informer that may not read nodes counts
        as listed, empty)."""
        listed = [informer.synced for informer in self.informers]
        listed += [informer.synced for informer in self.gang_informers]
        if self.node_informer is not None:
            listed.append(self.node_informer.synced)
        await asyncio.gather(*(event.wait() for event in listed))
        await controller.run(workers)

    def healthy(self) -> Check:
        """Alive: the sync loop runs, and neither kopf's job watcher nor an informer ended."""
        watchers = watchers_alive((PLURAL,))
        loop_ok = self.task is not None and not self.task.done()
        pods_ok = bool(self.informer_tasks) and not any(t.done() for t in self.informer_tasks)
        nodes_ok = self.node_task is not None and not self.node_task.done()
        ok = watchers.ok and loop_ok and pods_ok and nodes_ok
        detail = {"pod informers": pods_ok, "node informer": nodes_ok, "controller": loop_ok}
        return Check(ok, {**watchers.detail, **detail})

    def ready(self) -> Check:
        """Ready: alive, and the pods and nodes are listed (kopf lists the jobs before any job
        event). Nodes the operator may not read do not hold readiness back: it says so."""
        health = self.healthy()
        synced = bool(self.informers) and all(i.synced.is_set() for i in self.informers)
        groups_synced = all(i.synced.is_set() for i in self.gang_informers)
        nodes = self.node_informer
        nodes_synced = nodes is not None and nodes.synced.is_set()
        if nodes is not None and nodes.forbidden is not None:
            nodes_listed: object = f"forbidden, running without node facts: {nodes.forbidden}"
        else:
            nodes_listed = nodes_synced
        detail = {**health.detail, "pods listed": synced, "nodes listed": nodes_listed}
        if self.gang_informers:
            detail["podgroups listed"] = groups_synced
        return Check(health.ok and synced and groups_synced and nodes_synced, detail)


@kopf.index(GROUP, VERSION, PLURAL, registry=registry)
async def ucloud_jobs(body: kopf.Body, **_: Any) -> dict[JobKey, StoredJob]:
    job = StoredJob.of(body)
    return {(job.namespace, job.name): job}


@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
async def job_changed(type: str, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    controller: Controller = memo.runtime.controller
    key = (namespace or "", name)
    if type == "DELETED":
        controller.forget(key)
    else:
        controller.enqueue(key)
    WATCH_EVENTS.labels(PLURAL).inc()


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
    configure_kopf(settings, runtime.settings)
    # --metrics-secure: the certificate first, so that one that does not load stops the operator
    # at once (kopf retries a startup handler that fails otherwise).
    cert = None
    if runtime.settings.metrics_secure:
        try:
            cert = ServingCert(runtime.settings.metrics_cert_dir)
        except (OSError, ssl.SSLError, ValueError, ImportError) as error:
            where = runtime.settings.metrics_cert_dir or "self-signed"
            message = f"--metrics-secure: cannot load the serving certificate ({where}): {error}"
            raise kopf.PermanentError(message) from error

    parsed = ParsedJobs()

    def job(key: JobKey) -> Job | None:
        store = ucloud_jobs.get(key)
        stored = next(iter(store), None) if store is not None else None
        return parsed.job(stored) if stored is not None else None

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
        runtime.lease_api = KubernetesLeaseApi(
            client.ApiClient(configuration), ours.lease_namespace, ours.lease_name
        )
        runtime.elector = LeaderElector(
            runtime.lease_api,
            ours.lease_namespace,
            ours.lease_name,
            ours.instance,
            on_started_leading=resync,
        )
        runtime.lease_task = asyncio.create_task(runtime.elector.run(), name="leader election")
    gang_version = await gang_admission(runtime.api, ours.gang_admission)
    pods = PodIndex()
    nodes = NodeIndex()
    groups = GangIndex()
    runtime.controller = Controller(
        runtime.api,
        ours.rules,
        job,
        pods.pods,
        nodes=nodes.get,
        gangs=groups.get,
        gang_version=gang_version,
        leading=leading,
        create_concurrency=max(1, ours.api_concurrency // 2),  # the rest for status writes
    )
    LEADER.set_function(lambda: 1.0 if leading() else 0.0)
    runtime.start_pod_informers(runtime.api, pods, runtime.controller)
    if gang_version is not None:
        runtime.start_gang_informers(runtime.api, groups, gang_version, runtime.controller)
    runtime.start_node_informer(runtime.api, nodes, pods, runtime.controller)
    NODE_FACTS.set_function(lambda: 1.0 if runtime.node_facts() else 0.0)
    runtime.task = asyncio.create_task(
        runtime.run_controller(runtime.controller, ours.workers), name="controller"
    )
    QUEUE_DEPTH.set_function(lambda: len(runtime.controller.queue) if runtime.controller else 0)
    runtime.jobs_by_state = JobsByState(
        lambda: (job.state for store in ucloud_jobs.values() for job in store)
    )
    REGISTRY.register(runtime.jobs_by_state)
    runtime.lag_task = asyncio.create_task(measure_event_loop_lag(), name="event-loop lag")
    secure = SecureMetrics(cert, Authorizer(runtime.api)) if cert is not None else None
    runtime.server = Server(runtime.healthy, runtime.ready, secure=secure)
    await runtime.server.start(ours.metrics_address, ours.health_address)
    # What exists now (modules, clients, kopf's machinery) lives as long as the process: out of
    # the collector's reach, a full collection only scans what jobs and pods add, which keeps
    # its pauses of the event loop short.
    gc.collect()
    gc.freeze()


async def gang_admission(api: KubeApi, mode: str) -> str | None:
    """The scheduling.k8s.io version of PodGroups to use, or None: gang admission off. Said in
    the log and the `ucloud_gang_admission` metric. Where `on` cannot be had the operator stops
    (kopf ends the operator on a PermanentError at startup); an unreachable API server is
    retried, as any failure of a startup handler."""
    served = gangs.served_version(await api.discover(gangs.API_GROUP)) if mode != "off" else None
    try:
        version = gangs.resolve(mode, served)
    except gangs.GangAdmissionUnavailable as error:
        logger.error("%s", error)
        raise kopf.PermanentError(str(error)) from error
    if version is not None:
        logger.info(
            "gang admission: on (--gang-admission=%s): a PodGroup of %s/%s per job of more "
            "than one replica",
            mode,
            gangs.API_GROUP,
            version,
        )
    elif mode == "off":
        logger.info("gang admission: off (--gang-admission=off)")
    else:
        logger.info(
            "gang admission: off (--gang-admission=auto): the API server serves no podgroups in %s",
            gangs.API_GROUP,
        )
    GANG_ADMISSION.labels(mode, version or "").set(1 if version else 0)
    return version


@kopf.on.cleanup(registry=registry)
async def stop(memo: Any, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    if runtime.server is not None:
        await runtime.server.stop()
    if runtime.jobs_by_state is not None:
        REGISTRY.unregister(runtime.jobs_by_state)
    tasks = (runtime.task, runtime.lease_task, runtime.lag_task, runtime.node_task)
    for task in (*tasks, *runtime.informer_tasks):
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if runtime.elector is not None:
        await runtime.elector.release()
    if runtime.lease_api is not None:
        runtime.lease_api.close()
    if runtime.api is not None:
        await runtime.api.close()


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    settings.peering.standalone = True  # one replica, Recreate: no peering objects to freeze on
    settings.scanning.disabled = True  # no cluster-wide list of CRDs and namespaces needed
    settings.posting.enabled = False  # the controller posts its own events, one per change
    settings.watching.server_timeout = 300
    # An idle per-object worker holds its object's last event (a whole job body) until it exits:
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
    tenth of the operator's CPU under load (when kopf still watched the pods). It stores and
    fetches nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
