"""The replica pods of every job, in memory: a list, then a watch from where the list ended, each
pod kept as a `ReplicaPod` summary (client-go's informer, for one resource).

Pods are most of what the operator hears: 20 of the 25 watch events of a 4-replica job. kopf
hands every event to a per-object worker, its index and its event handlers, about 0.3 ms of CPU
each (measured without a cluster), so the pods are watched here and kopf keeps the UCloudJobs.
An event costs a decode, `observe()` and a dict update, and puts the job's key on the queue.

After the first list, `synced` is set: the controller waits for it, so no job is reconciled
before its pods are known. A watch that ends is resumed from the last resourceVersion seen (a
bookmark included); one that is too old (410 Gone) is replaced by a new list, whose differences
from the index are applied as events are.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol

from .kube import Expired, Refused, Transient
from .metrics import WATCH_EVENTS
from .models import JOB_NAME_LABEL
from .replicas import ReplicaPod, as_list, as_mapping, observe

logger = logging.getLogger(__name__)

JobKey = tuple[str, str]  # (namespace, job name)
PodKey = tuple[str, str]  # (namespace, pod name)

LIST_PAGE = 500
WATCH_SECONDS = 300  # the server ends each watch after this; it is resumed at once
READ_TIMEOUT = WATCH_SECONDS + 30.0  # silence longer than this is a dead connection
MAX_RETRY_DELAY = 30.0


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


class PodInformer:
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
    ) -> None:
        self._api = api
        self._first_retry_delay = first_retry_delay
        self._index = index
        self._namespace = namespace
        self._changed = changed
        self._path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        self.synced = asyncio.Event()
        self._version: str | None = None  # where the next watch starts; None: list first

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self._version is None:
                    self._version = await self._relist()
                    self.synced.set()
                await self._watch(self._version)
                failures = 0
            except Expired:
                logger.info("the pod watch of %s is too old: listing again", self.scope)
                self._version = None
            except (Transient, Refused) as error:
                failures += 1
                delay = min(MAX_RETRY_DELAY, self._first_retry_delay * 2 ** (failures - 1))
                delay *= random.uniform(0.8, 1.2)
                level = logging.WARNING if failures < 5 else logging.ERROR
                logger.log(level, "pod watch of %s (retry in %.1fs): %s", self.scope, delay, error)
                await asyncio.sleep(delay)

    @property
    def scope(self) -> str:
        return f"namespace {self._namespace}" if self._namespace else "all namespaces"

    async def _relist(self) -> str:
        """Read every replica pod anew; apply what changed; the list's resourceVersion."""
        params = {"labelSelector": JOB_NAME_LABEL, "limit": str(LIST_PAGE)}
        stale = set(self._index.in_namespace(self._namespace))
        while True:
            page = as_mapping(await self._api.list_page("pods", self._path, params))
            for item in as_list(page.get("items")):
                pod = _observe_named(item)
                if pod is not None:
                    stale.discard((pod.namespace, pod.name))
                    self._put(pod)
            metadata = as_mapping(page.get("metadata"))
            more = metadata.get("continue")
            if not more:
                break
            params = {**params, "continue": str(more)}
        for namespace, name in stale:
            self._remove(namespace, name)
        return str(metadata.get("resourceVersion") or "")

    async def _watch(self, version: str) -> None:
        """Apply events from `version` on until the server ends the watch."""
        params = {
            "labelSelector": JOB_NAME_LABEL,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self._api.watch("pods", self._path, params, READ_TIMEOUT):
            kind = event.get("type") if isinstance(event, Mapping) else None
            body = as_mapping(event.get("object")) if kind else {}
            if kind == "ERROR":
                code = body.get("code")
                if code == 410:
                    raise Expired(str(body.get("message", "resourceVersion too old")))
                raise Transient(f"watch error {code}: {body.get('message')}")
            self._version = str(as_mapping(body.get("metadata")).get("resourceVersion") or version)
            pod = _observe_named(body) if kind in ("ADDED", "MODIFIED", "DELETED") else None
            if pod is None:
                continue
            if kind == "DELETED":
                self._remove(pod.namespace, pod.name)
            else:
                self._put(pod)

    def _put(self, pod: ReplicaPod) -> None:
        for key in self._index.put(pod):
            self._changed(key)
        WATCH_EVENTS.labels("pods").inc()

    def _remove(self, namespace: str, name: str) -> None:
        key = self._index.remove(namespace, name)
        if key is not None:
            self._changed(key)
        WATCH_EVENTS.labels("pods").inc()


def _observe_named(body: Any) -> ReplicaPod | None:
    """The pod's summary; None for a body without a name (nothing the API server sends), which
    nothing could key."""
    pod = observe(body)
    return pod if pod.name else None
