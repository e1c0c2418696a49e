"""The operator's few writes to the Kubernetes API, behind one small protocol.

The official client is synchronous: every call runs in a bounded thread pool so the event loop
(and kopf's watches with it) never waits on the network. Responses are not deserialised into
client models (`_preload_content=False`): the operator never reads them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .metrics import API_REQUESTS, API_RETRIES
from .models import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .state import Event

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMPONENT = "ucloud-operator"
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRY_DELAYS = (0.1, 0.3, 1.0, 3.0)  # then the reconcile gives up and requeues with backoff


class Refused(Exception):  # noqa: N818 - it reads as "the API server refused"
    """The API server refused a request for good (invalid, forbidden, over quota)."""


class Transient(Exception):  # noqa: N818
    """The API server could not be reached or answered with a retryable error."""


class JobApi(Protocol):
    """Everything the controller writes. Unit tests pass a recording fake."""

    async def create(self, body: dict[str, Any]) -> None: ...
    async def delete_pod(self, namespace: str, name: str) -> None: ...
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def emit_event(self, namespace: str, name: str, uid: str, event: Event) -> None: ...


def load_client_config(pool_size: int) -> client.ApiClient:
    """In-cluster credentials when there, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = False  # retries are ours, with backoff, and counted
    return client.ApiClient(configuration)


class KubeApi:
    """`JobApi` over the official client."""

    def __init__(
        self, api_client: client.ApiClient, threads: int, instance: str, timeout: float = 20.0
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self._instance = instance
        self._timeout = (5.0, timeout)  # connect, read: a stalled request must not pin a thread

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def create(self, body: dict[str, Any]) -> None:
        """Create a pod or Service; AlreadyExists is success (names are deterministic)."""
        namespace = body["metadata"]["namespace"]
        pod = body["kind"] == "Pod"
        create = self._core.create_namespaced_pod if pod else self._core.create_namespaced_service
        try:
            await self._call("create", "pods" if pod else "services", create, namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise Refused(_message(error)) from error

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await self._call("delete", "pods", self._core.delete_namespaced_pod, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise Refused(_message(error)) from error

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            "patch",
            "ucloudjobs/status",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    async def emit_event(self, namespace: str, name: str, uid: str, event: Event) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name,
                "namespace": namespace,
                "uid": uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "action": "StateChange",
            "count": 1,
        }
        await self._call("create", "events", self._core.create_namespaced_event, namespace, body)

    async def _call(
        self, verb: str, resource: str, method: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run a client call in the pool, retrying transient failures with jittered backoff."""
        call = functools.partial(
            method, *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
        )
        loop = asyncio.get_running_loop()
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                result = await loop.run_in_executor(self._pool, call)
                API_REQUESTS.labels(verb, resource, str(getattr(result, "status", 200))).inc()
                return result
            except ApiException as error:
                API_REQUESTS.labels(verb, resource, str(error.status)).inc()
                if error.status not in _TRANSIENT_STATUS:
                    raise
                failure: Exception = error
            except (urllib3.exceptions.HTTPError, OSError) as error:
                API_REQUESTS.labels(verb, resource, "0").inc()
                failure = error
            except (ValueError, TypeError) as error:
                # The client validates bodies before sending them (pydantic): a template field
                # of the wrong shape is refused here, as the API server would refuse it.
                raise Refused(f"invalid {resource}: {_first_line(error)}") from error
            if delay is None:
                raise Transient(f"{verb} {resource}: {failure}") from failure
            API_RETRIES.labels(verb, resource).inc()
            logger.debug("retrying %s %s (attempt %d): %s", verb, resource, attempt + 1, failure)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split("\n")[:3])


def _message(error: ApiException) -> str:
    """The API server's own message, which names the admission plugin or quota at fault."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"
