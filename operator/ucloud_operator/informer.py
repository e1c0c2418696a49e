"""The replica pods of every job, and the health of every node, in memory: a list, then a watch
from where the list ended, each object kept as a small summary (client-go's informer): a
`ReplicaPod` per pod, a `NodeHealth` per node. One `Informer` does both.

Pods are most of what the operator hears: 20 of the 25 watch events of a 4-replica job. kopf
hands every event to a per-object worker, its index and its event handlers, about 0.3 ms of CPU
each (measured without a cluster), so the pods are watched here and kopf keeps the UCloudJobs.
An event costs a decode, `observe()` and a dict update, and puts the job's key on the queue.

After the first list, `synced` is set: the controller waits for it, so no job is reconciled
before its pods are known. A watch that ends is resumed from the last resourceVersion seen (a
bookmark included); one that is too old (410 Gone) is replaced by a new list, whose differences
from the index are applied as events are.

Under gang admission, the jobs' PodGroups too: only the scheduler's verdict on each is kept.

Nodes tell a lost node on Kubernetes >= 1.36, where its pods stay `Running` (nodes.py). Their
heartbeats change no summary, so only a node that stops or starts reporting queues the jobs with
a replica on it. The operator may lack the permission to read nodes (a namespaced install
without the ClusterRole): it then says so once and runs on the pods' own signals.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from . import gangs
from .gangs import GangPlacement, placement_of
from .kube import Expired, Forbidden, Refused, Transient, backoff
from .metrics import WATCH_EVENTS
from .models import JOB_NAME_LABEL
from .nodes import NodeHealth, observe_node
from .replicas import ReplicaPod, as_list, as_mapping, observe

logger = logging.getLogger(__name__)

JobKey = tuple[str, str]  # (namespace, job name)
PodKey = tuple[str, str]  # (namespace, pod name)

LIST_PAGE = 500
WATCH_SECONDS = 300  # the server ends each watch after this; it is resumed at once
READ_TIMEOUT = WATCH_SECONDS + 30.0  # silence longer than this is a dead connection
MAX_RETRY_DELAY = 30.0
FORBIDDEN_RETRY_SECONDS = 300  # an optional resource the operator may not read: asked this often

K = TypeVar("K")  # how a summary is keyed
T = TypeVar("T")  # the summary
T_contra = TypeVar("T_contra", contravariant=True)


class ListWatch(Protocol):
    """The reads an informer makes (`kube.KubeApi`); unit tests pass a scripted fake."""

    async def list_page(self, resource: str, path: str, params: Mapping[str, str]) -> Any: ...

    def watch(
        self, resource: str, path: str, params: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[Any]: ...


class PodIndex:
    """Replica pods by job, and the job of each pod (a pod's labels can change)."""

    def __init__(self) -> None:
        self._by_job: dict[JobKey, dict[str, ReplicaPod]] = {}
        self._job_of: dict[PodKey, JobKey] = {}

    def __len__(self) -> int:
        return len(self._job_of)

    def pods(self, key: JobKey) -> Iterable[ReplicaPod]:
        pods = self._by_job.get(key)
        return pods.values() if pods is not None else ()

    def keys(self) -> Iterable[JobKey]:
        return self._by_job.keys()

    def put(self, pod: ReplicaPod) -> tuple[JobKey, ...]:
        """Store a pod's summary; the jobs it concerns (two if it moved to another job)."""
        key = (pod.namespace, pod.job_name)
        left = self._job_of.get((pod.namespace, pod.name))
        if left == key:
            left = None
        if left is not None:
            self.remove(pod.namespace, pod.name)
        self._job_of[pod.namespace, pod.name] = key
        self._by_job.setdefault(key, {})[pod.name] = pod
        return (key,) if left is None else (key, left)

    def remove(self, namespace: str, name: str) -> JobKey | None:
        key = self._job_of.pop((namespace, name), None)
        if key is not None:
            pods = self._by_job[key]
            del pods[name]
            if not pods:
                del self._by_job[key]
        return key

    def in_namespace(self, namespace: str | None) -> list[PodKey]:
        return [pod for pod in self._job_of if namespace is None or pod[0] == namespace]

    def jobs_on_node(self, node: str) -> list[JobKey]:
        """The jobs with a replica on `node`. A scan: nodes change what the rules see rarely
        (when they stop or start reporting), and an index by node would cost memory per pod."""
        return [
            key
            for key, pods in self._by_job.items()
            if any(pod.node == node for pod in pods.values())
        ]


class Store(Protocol[K, T_contra]):
    """Where an informer keeps its summaries; it tells whoever needs to know of each change."""

    def known(self) -> Iterable[K]:
        """The keys this informer's lists fill: those a new list no longer has are removed."""
        ...

    def put(self, key: K, item: T_contra) -> None: ...

    def remove(self, key: K) -> None: ...


class Informer(Generic[K, T]):
    """Lists, then watches, one resource into a `Store`, each object kept as the summary
    `summarise` makes of it (None: nothing to keep).

    `if_forbidden` makes the resource optional: the operator runs without it if it may not read
    it (403), and this sentence says what that costs. The informer then warns once, counts as
    synced (so it holds nothing back), keeps no stale summaries, and tries again every few
    minutes in case the permission is granted. Without it, a 403 is retried as any failure."""

    def __init__(
        self,
        api: ListWatch,
        resource: str,
        path: str,
        store: Store[K, T],
        summarise: Callable[[Any], tuple[K, T] | None],
        *,
        scope: str,
        label_selector: str | None = None,
        if_forbidden: str | None = None,
        first_retry_delay: float = 0.5,
        forbidden_retry_delay: float = FORBIDDEN_RETRY_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._sleep = sleep
        self._resource = resource
        self._path = path
        self._store = store
        self._summarise = summarise
        self.scope = scope
        self._selector = {"labelSelector": label_selector} if label_selector else {}
        self._if_forbidden = if_forbidden
        self._first_retry_delay = first_retry_delay
        self._forbidden_retry_delay = forbidden_retry_delay
        self.synced = asyncio.Event()
        self.forbidden: str | None = None  # the API server's refusal, while it lasts (optional)
        self._version: str | None = None  # where the next watch starts; None: list first

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self._version is None:
                    self._version = await self._relist()
                    self._allowed()
                    self.synced.set()
                await self._watch(self._version)
                failures = 0
            except Expired:
                logger.info("the %s watch of %s is too old: listing again", self._resource, self)
                self._version = None
            except Forbidden as error:
                if self._if_forbidden is None:
                    failures = await self._back_off(failures, error)
                    continue
                self._refused(error)
                await self._sleep(self._forbidden_retry_delay)
            except (Transient, Refused) as error:
                failures = await self._back_off(failures, error)

    def __str__(self) -> str:
        return self.scope

    async def _back_off(self, failures: int, error: Exception) -> int:
        """Wait before the next list or watch: exponential backoff, or the Retry-After of a
        429 or 503 if longer (at most MAX_RETRY_AFTER)."""
        failures += 1
        delay = min(MAX_RETRY_DELAY, self._first_retry_delay * 2 ** (failures - 1))
        delay = backoff(delay * random.uniform(0.8, 1.2), error)
        level = logging.WARNING if failures < 5 else logging.ERROR
        logger.log(level, "%s watch of %s (retry in %.1fs): %s", self._resource, self, delay, error)
        await self._sleep(delay)
        return failures

    def _refused(self, error: Forbidden) -> None:
        """May not read: said once, and what was read before is dropped (stale facts would be
        worse than none)."""
        if self.forbidden is None:
            logger.warning(
                "may not list or watch %s (%s): %s; asking again every %.0fs",
                self._resource,
                error,
                self._if_forbidden,
                self._forbidden_retry_delay,
            )
        self.forbidden = str(error)
        self._version = None
        for key in list(self._store.known()):
            self._store.remove(key)
        self.synced.set()

    def _allowed(self) -> None:
        if self.forbidden is not None:
            logger.info("may read %s again: listed", self._resource)
            self.forbidden = None

    async def _relist(self) -> str:
        """Read every object anew; apply what changed; the list's resourceVersion."""
        params = {**self._selector, "limit": str(LIST_PAGE)}
        stale = set(self._store.known())
        while True:
            page = as_mapping(await self._api.list_page(self._resource, self._path, params))
            for item in as_list(page.get("items")):
                keyed = self._summarise(item)
                if keyed is not None:
                    stale.discard(keyed[0])
                    self._put(*keyed)
            metadata = as_mapping(page.get("metadata"))
            more = metadata.get("continue")
            if not more:
                break
            params = {**params, "continue": str(more)}
        for key in stale:
            self._remove(key)
        return str(metadata.get("resourceVersion") or "")

    async def _watch(self, version: str) -> None:
        """Apply events from `version` on until the server ends the watch."""
        params = {
            **self._selector,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self._api.watch(self._resource, self._path, params, READ_TIMEOUT):
            kind = event.get("type") if isinstance(event, Mapping) else None
            body = as_mapping(event.get("object")) if kind else {}
            if kind == "ERROR":
                code = body.get("code")
                if code == 410:
                    raise Expired(str(body.get("message", "resourceVersion too old")))
                if code == 403:
                    raise Forbidden(str(body.get("message", "forbidden")))
                raise Transient(f"watch error {code}: {body.get('message')}")
            self._version = str(as_mapping(body.get("metadata")).get("resourceVersion") or version)
            keyed = self._summarise(body) if kind in ("ADDED", "MODIFIED", "DELETED") else None
            if keyed is None:
                continue
            if kind == "DELETED":
                self._remove(keyed[0])
            else:
                self._put(*keyed)

    def _put(self, key: K, item: T) -> None:
        self._store.put(key, item)
        WATCH_EVENTS.labels(self._resource).inc()

    def _remove(self, key: K) -> None:
        self._store.remove(key)
        WATCH_EVENTS.labels(self._resource).inc()


# --- the replica pods --------------------------------------------------------------------------


class PodInformer(Informer[PodKey, ReplicaPod]):
    """Lists and watches the replica pods of one namespace (or all of them) into a `PodIndex`,
    calling `changed` with the key of every job whose pods changed."""

    def __init__(
        self,
        api: ListWatch,
        index: PodIndex,
        namespace: str | None,
        changed: Callable[[JobKey], None],
        *,
        first_retry_delay: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            api,
            "pods",
            f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods",
            _PodStore(index, namespace, changed),
            _keyed_pod,
            scope=f"namespace {namespace}" if namespace else "all namespaces",
            label_selector=JOB_NAME_LABEL,
            first_retry_delay=first_retry_delay,
            sleep=sleep,
        )


class _PodStore:
    def __init__(
        self, index: PodIndex, namespace: str | None, changed: Callable[[JobKey], None]
    ) -> None:
        self._index = index
        self._namespace = namespace
        self._changed = changed

    def known(self) -> Iterable[PodKey]:
        return self._index.in_namespace(self._namespace)

    def put(self, key: PodKey, item: ReplicaPod) -> None:
        for job in self._index.put(item):
            self._changed(job)

    def remove(self, key: PodKey) -> None:
        job = self._index.remove(*key)
        if job is not None:
            self._changed(job)


def _keyed_pod(body: Any) -> tuple[PodKey, ReplicaPod] | None:
    """The pod's summary; None for a body without a name (nothing the API server sends), which
    nothing could key."""
    pod = observe(body)
    return ((pod.namespace, pod.name), pod) if pod.name else None


# --- the nodes ---------------------------------------------------------------------------------


class NodeIndex:
    """The health of every node, by name: a few words per node."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeHealth] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, name: str) -> NodeHealth | None:
        return self._nodes.get(name)

    def names(self) -> Iterable[str]:
        return self._nodes.keys()

    def put(self, node: NodeHealth) -> bool:
        """Store a node's summary; whether the rules see it differently now (lost or not, and
        since when). A node first seen healthy is no news: its jobs wait for no node."""
        before = self._nodes.get(node.name)
        self._nodes[node.name] = node
        was = before.lost_since if before is not None else None
        return was != node.lost_since

    def remove(self, name: str) -> bool:
        """Forget a node; whether it was lost (its replicas fall back to the pods' signals)."""
        before = self._nodes.pop(name, None)
        return before is not None and before.lost


NODES_FORBIDDEN = (
    "running without node facts, so a lost node is told only by its pods' own signals (the "
    "taint manager's eviction, minutes later); grant list and watch on nodes (the chart's "
    "rbac.nodes)"
)


class NodeInformer(Informer[str, NodeHealth]):
    """Lists and watches every node into a `NodeIndex`, calling `changed` with the name of each
    node that stopped reporting, or started again. Optional: without the permission to read
    nodes the operator runs on the pods' own signals."""

    def __init__(
        self,
        api: ListWatch,
        index: NodeIndex,
        changed: Callable[[str], None],
        *,
        first_retry_delay: float = 0.5,
        forbidden_retry_delay: float = FORBIDDEN_RETRY_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            api,
            "nodes",
            "/api/v1/nodes",
            _NodeStore(index, changed),
            _keyed_node,
            scope="the cluster",
            if_forbidden=NODES_FORBIDDEN,
            first_retry_delay=first_retry_delay,
            forbidden_retry_delay=forbidden_retry_delay,
            sleep=sleep,
        )


class _NodeStore:
    def __init__(self, index: NodeIndex, changed: Callable[[str], None]) -> None:
        self._index = index
        self._changed = changed

    def known(self) -> Iterable[str]:
        return self._index.names()

    def put(self, key: str, item: NodeHealth) -> None:
        if self._index.put(item):
            self._changed(key)

    def remove(self, key: str) -> None:
        if self._index.remove(key):
            self._changed(key)


def _keyed_node(body: Any) -> tuple[str, NodeHealth] | None:
    node = observe_node(body)
    return (node.name, node) if node.name else None


# --- the gangs' PodGroups ----------------------------------------------------------------------


class GangIndex:
    """The scheduler's verdict on each job's PodGroup, by job key (a group is named after its
    job)."""

    def __init__(self) -> None:
        self._groups: dict[JobKey, GangPlacement] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, key: JobKey) -> GangPlacement | None:
        return self._groups.get(key)

    def in_namespace(self, namespace: str | None) -> list[JobKey]:
        return [key for key in self._groups if namespace is None or key[0] == namespace]

    def put(self, key: JobKey, placement: GangPlacement) -> bool:
        """Store a group's verdict; whether it changed."""
        before = self._groups.get(key)
        self._groups[key] = placement
        return before != placement

    def remove(self, key: JobKey) -> bool:
        return self._groups.pop(key, None) is not None


PODGROUPS_FORBIDDEN = (
    "running without the scheduler's verdict on gangs (a gang it cannot place shows as "
    "WaitingForReplicas, not Unschedulable); grant get, list, watch, create and delete on "
    "podgroups.scheduling.k8s.io (the chart does unless operator.gangAdmission is off), or run "
    "with --gang-admission=off"
)


class GangInformer(Informer[JobKey, GangPlacement]):
    """Lists and watches the jobs' PodGroups of one namespace (or all of them) into a
    `GangIndex`, calling `changed` with the key of every job whose group's verdict changed.
    Optional: without the permission to read them, the jobs still run (and a group whose create
    is refused too fails its job with the API server's words)."""

    def __init__(
        self,
        api: ListWatch,
        index: GangIndex,
        namespace: str | None,
        version: str,
        changed: Callable[[JobKey], None],
        *,
        first_retry_delay: float = 0.5,
        forbidden_retry_delay: float = FORBIDDEN_RETRY_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        base = f"/apis/{gangs.API_GROUP}/{version}"
        where = f"{base}/namespaces/{namespace}" if namespace else base
        super().__init__(
            api,
            gangs.PLURAL,
            f"{where}/{gangs.PLURAL}",
            _GangStore(index, namespace, changed),
            _keyed_group,
            scope=f"namespace {namespace}" if namespace else "all namespaces",
            label_selector=JOB_NAME_LABEL,
            if_forbidden=PODGROUPS_FORBIDDEN,
            first_retry_delay=first_retry_delay,
            forbidden_retry_delay=forbidden_retry_delay,
            sleep=sleep,
        )


class _GangStore:
    def __init__(
        self, index: GangIndex, namespace: str | None, changed: Callable[[JobKey], None]
    ) -> None:
        self._index = index
        self._namespace = namespace
        self._changed = changed

    def known(self) -> Iterable[JobKey]:
        return self._index.in_namespace(self._namespace)

    def put(self, key: JobKey, item: GangPlacement) -> None:
        if self._index.put(key, item):
            self._changed(key)

    def remove(self, key: JobKey) -> None:
        if self._index.remove(key):
            self._changed(key)


def _keyed_group(body: Any) -> tuple[JobKey, GangPlacement] | None:
    metadata = as_mapping(body.get("metadata")) if isinstance(body, Mapping) else {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return (namespace, name), placement_of(body)
