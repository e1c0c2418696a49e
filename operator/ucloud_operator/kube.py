"""The operator's few writes to the Kubernetes API, behind one small protocol, and the list and
watch that feed the informers (pods, nodes).

The writes go out on aiohttp (already kopf's HTTP client) straight from the event loop: no thread
pool, and no client-side models to build and validate for every pod, which measured as most of
the operator's CPU per job with the official client. The official `kubernetes` package is kept
for what it does well: reading the kubeconfig or the in-cluster service account once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, cast

import aiohttp
from kubernetes import client, config

from . import gangs
from .metrics import API_LATENCY, API_REQUESTS, API_RETRIES
from .models import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .status import Event
from .wirejson import dumps, loads

logger = logging.getLogger(__name__)

COMPONENT = "ucloud-operator"
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRY_DELAYS = (0.1, 0.3, 1.0, 3.0)  # then the reconcile gives up and requeues with backoff
# Answers whose Retry-After is honoured: 429 (API Priority and Fairness, max-in-flight) and 503.
_RETRY_AFTER_STATUS = frozenset({429, 503})
MAX_RETRY_AFTER = 30.0  # seconds: a longer Retry-After is cut to this
_TOKEN_REFRESH_SECONDS = 60.0  # bound service-account tokens rotate; re-read the file this often


_RESOURCES = {"Pod": "pods", "Service": "services", "PodGroup": gangs.PLURAL}


class Refused(Exception):  # noqa: N818 - it reads as "the API server refused"
    """The API server refused a request for good (invalid, forbidden, over quota)."""


class Forbidden(Refused):
    """403: the operator's identity may not do this (RBAC), or an admission plugin said no."""


class Transient(Exception):  # noqa: N818
    """The API server could not be reached or answered with a retryable error; `retry_after`:
    the seconds it asked the client to wait (Retry-After), if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Expired(Transient):
    """410 Gone: the resourceVersion a list or watch started from is too old; list again."""


class JobApi(Protocol):
    """Everything the controller writes. Unit tests pass a recording fake."""

    async def create(self, body: dict[str, Any]) -> None: ...
    async def delete_pod(self, namespace: str, name: str) -> None: ...
    async def delete_service(self, namespace: str, name: str) -> None: ...
    async def delete_pod_group(self, namespace: str, name: str, version: str) -> None: ...
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def emit_event(self, namespace: str, name: str, uid: str, event: Event) -> None: ...


def load_client_config() -> client.Configuration:
    """In-cluster credentials when there, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


class KubeApi:
    """`JobApi` over aiohttp, with the credentials of a client `Configuration`."""

    def __init__(
        self,
        configuration: client.Configuration,
        concurrency: int,
        instance: str,
        timeout: float = 20.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._configuration = configuration
        self._sleep = sleep
        self._wall = wall  # for a Retry-After given as a date
        self._base = configuration.host.rstrip("/")
        self._concurrency = concurrency
        self._instance = instance
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=5.0)
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_read_at: float | None = None

    async def start(self) -> None:
        context = self._ssl_context()
        connector = aiohttp.TCPConnector(ssl=context, limit=self._concurrency)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        # Watches hold their connection for minutes: they must not take the writers' slots.
        self._watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        )

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    async def list_page(self, resource: str, path: str, params: Mapping[str, str]) -> Any:
        """One page of a list, decoded."""
        assert self._watch_session is not None, "KubeApi.start() first"
        try:
            async with self._watch_session.get(
                self._base + path,
                params=params,
                headers=self._headers("application/json"),
                timeout=self._timeout,
            ) as response:
                payload = await response.read()
                status = response.status
                wait = retry_after(status, response.headers, self._wall())
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            API_REQUESTS.labels("list", resource, "0").inc()
            raise Transient(f"list {resource}: {error!r}") from error
        API_REQUESTS.labels("list", resource, str(status)).inc()
        if status >= 300:
            raise _read_error(status, payload.decode(errors="replace"), wait)
        try:
            return loads(payload)
        except ValueError as error:
            raise Transient(f"list {resource}: not JSON: {error}") from error

    async def watch(
        self, resource: str, path: str, params: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[Any]:
        """The decoded events of one watch request, until the server ends it."""
        assert self._watch_session is not None, "KubeApi.start() first"
        try:
            async with self._watch_session.get(
                self._base + path,
                params={**params, "watch": "true"},
                headers=self._headers("application/json"),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=read_timeout),
            ) as response:
                API_REQUESTS.labels("watch", resource, str(response.status)).inc()
                if response.status >= 300:
                    raise _read_error(
                        response.status,
                        (await response.read()).decode(errors="replace"),
                        retry_after(response.status, response.headers, self._wall()),
                    )
                rest = b""
                async for chunk in response.content.iter_any():
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        if line:
                            yield loads(line)
                    # Reading buffered data never suspends: without this, a stream that does
                    # not run dry would keep the loop (one informer step took 29 ms of CPU in
                    # a burst, bench/diag).
                    await asyncio.sleep(0)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise Transient(f"watch {resource}: {error!r}") from error
        except ValueError as error:  # a garbled line: watch again from the last good one
            raise Transient(f"watch {resource}: not JSON: {error}") from error

    async def create(self, body: dict[str, Any]) -> None:
        """Create a pod, Service or PodGroup; AlreadyExists is success (names are
        deterministic)."""
        resource = _RESOURCES[body["kind"]]
        version = body.get("apiVersion", "v1")
        prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
        path = f"{prefix}/namespaces/{body['metadata']['namespace']}/{resource}"
        await self._send("create", resource, "POST", path, body, ok_too=409)

    async def delete_pod(self, namespace: str, name: str) -> None:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        await self._send("delete", "pods", "DELETE", path, None, ok_too=404)

    async def delete_service(self, namespace: str, name: str) -> None:
        path = f"/api/v1/namespaces/{namespace}/services/{name}"
        await self._send("delete", "services", "DELETE", path, None, ok_too=404)

    async def delete_pod_group(self, namespace: str, name: str, version: str) -> None:
        path = f"/apis/{gangs.API_GROUP}/{version}/namespaces/{namespace}/{gangs.PLURAL}/{name}"
        await self._send("delete", gangs.PLURAL, "DELETE", path, None, ok_too=404)

    async def discover(self, group: str) -> dict[str, list[str]]:
        """The versions of API `group` the server serves, each with its resources; empty when
        it serves none. Transient failures are retried as writes are: the operator asks once, at
        start, and waits on the answer."""
        try:
            listing = await self._read(f"/apis/{group}")
        except Refused:  # 404: not served at all
            return {}
        served: dict[str, list[str]] = {}
        for entry in listing.get("versions") or ():
            version = entry.get("version")
            if not isinstance(version, str):
                continue
            resources = await self._read(f"/apis/{group}/{version}")
            names = [r.get("name") for r in resources.get("resources") or ()]
            served[version] = [name for name in names if isinstance(name, str)]
        return served

    async def _read(self, path: str) -> Any:
        """One discovery document, retried with jittered backoff (or Retry-After)."""
        for delay in (*_RETRY_DELAYS, None):
            try:
                return await self.list_page("discovery", path, {})
            except Transient as failure:
                if delay is None:
                    raise
                API_RETRIES.labels("get", "discovery").inc()
                await self._sleep(backoff(delay * random.uniform(0.5, 1.5), failure))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        await self._send(
            "patch",
            f"{PLURAL}/status",
            "PATCH",
            path,
            {"status": status},
            content_type="application/merge-patch+json",
        )

    async def emit_event(self, namespace: str, name: str, uid: str, event: Event) -> None:
        now = datetime.now(UTC)
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
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "action": "StateChange",
            "count": 1,
        }
        await self._send("create", "events", "POST", f"/api/v1/namespaces/{namespace}/events", body)

    async def token_review(self, token: str) -> dict[str, Any]:
        """The status of a TokenReview (authentication.k8s.io/v1) of a bearer token: whether it
        is authenticated, and as whom (`user`: username, uid, groups, extra)."""
        body = {"spec": {"token": token}}
        return await self._review("authentication.k8s.io", "TokenReview", "tokenreviews", body)

    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The status of a SubjectAccessReview (authorization.k8s.io/v1) of `spec` (a user, its
        groups, and resource or non-resource attributes): `allowed`, and a `reason`."""
        return await self._review(
            "authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", {"spec": spec}
        )

    async def _review(
        self, group: str, kind: str, resource: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create a review and give its status. One attempt, no retries: a caller waits on it
        (a scrape), and asks again."""
        assert self._session is not None, "KubeApi.start() first"
        body = {"apiVersion": f"{group}/v1", "kind": kind, **body}
        started = time.monotonic()
        try:
            async with self._session.post(
                f"{self._base}/apis/{group}/v1/{resource}",
                data=dumps(body),
                headers=self._headers("application/json"),
            ) as response:
                status = response.status
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            API_REQUESTS.labels("create", resource, "0").inc()
            raise Transient(f"create {resource}: {error!r}") from error
        API_LATENCY.labels("create", resource).observe(time.monotonic() - started)
        API_REQUESTS.labels("create", resource, str(status)).inc()
        if status >= 300:
            raise _error(status, payload.decode(errors="replace"))
        try:
            review = loads(payload)
        except ValueError as error:
            raise Transient(f"create {resource}: not JSON: {error}") from error
        return dict(review.get("status") or {}) if isinstance(review, dict) else {}

    async def _send(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        ok_too: int | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Send one request, retrying transient failures with jittered backoff, or after the
        Retry-After of a 429 or 503 (at least the backoff, at most MAX_RETRY_AFTER)."""
        assert self._session is not None, "KubeApi.start() first"
        data = dumps(body) if body is not None else None
        failure: Exception | None = None
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            started = time.monotonic()
            try:
                async with self._session.request(
                    method, self._base + path, data=data, headers=self._headers(content_type)
                ) as response:
                    status = response.status
                    # Read every body: an unread one closes the connection, and the next
                    # request pays a new TLS handshake.
                    payload = await response.read()
                    text = payload.decode(errors="replace") if status >= 300 else ""
                    wait = retry_after(status, response.headers, self._wall())
                API_LATENCY.labels(verb, resource).observe(time.monotonic() - started)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                API_REQUESTS.labels(verb, resource, "0").inc()
                failure = Transient(f"{verb} {resource}: {error!r}")
            else:
                API_REQUESTS.labels(verb, resource, str(status)).inc()
                if status < 300 or status == ok_too:
                    return
                answer = _error(status, text)
                if isinstance(answer, Refused):
                    raise answer
                failure = Transient(f"{verb} {resource}: {answer}", wait)
            if delay is None:
                raise failure
            API_RETRIES.labels(verb, resource).inc()
            pause = backoff(delay * random.uniform(0.5, 1.5), failure)
            logger.debug(
                "retrying %s %s in %.2fs (attempt %d): %s",
                verb,
                resource,
                pause,
                attempt + 1,
                failure,
            )
            await self._sleep(pause)

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {
            "Content-Type": content_type,
            "Accept": "application/json",
            "User-Agent": f"{COMPONENT}/{self._instance}",
        }
        token = self._bearer_token()
        if token:
            headers["Authorization"] = token
        return headers

    def _bearer_token(self) -> str | None:
        """The Authorization header of the client configuration, as the `kubernetes` client's own
        `auth_settings()` gives it (which runs the configuration's refresh hook), read again at
        most once a minute: bound service-account tokens rotate."""
        now = time.monotonic()
        if self._token_read_at is None or now - self._token_read_at > _TOKEN_REFRESH_SECONDS:
            settings = cast(Mapping[str, Mapping[str, Any]], self._configuration.auth_settings())
            self._token = next(
                (str(a["value"]) for a in settings.values() if a["in"] == "header" and a["value"]),
                None,
            )
            self._token_read_at = now
        return self._token

    def _ssl_context(self) -> ssl.SSLContext | bool:
        configuration = self._configuration
        if not self._base.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        return context


def retry_after(status: int, headers: Mapping[str, str], now: datetime) -> float | None:
    """The seconds a 429 or 503 answer asks the client to wait (Retry-After: delay-seconds or
    an HTTP date, RFC 9110); None when it asks nothing (or another status carries it)."""
    value = headers.get("Retry-After") if status in _RETRY_AFTER_STATUS else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def backoff(delay: float, error: Exception) -> float:
    """The wait before retrying after `error`: `delay` (the caller's own backoff), or what the
    API server asked for if longer, up to MAX_RETRY_AFTER."""
    asked = error.retry_after if isinstance(error, Transient) else None
    return delay if asked is None else max(delay, min(asked, MAX_RETRY_AFTER))


def _error(status: int, text: str, retry_after: float | None = None) -> Refused | Transient:
    """An answer of `status`: refused for good, or worth another try."""
    message = _message(status, text)
    if status in _TRANSIENT_STATUS:
        return Transient(message, retry_after)
    return Forbidden(message) if status == 403 else Refused(message)


def _read_error(status: int, text: str, retry_after: float | None = None) -> Refused | Transient:
    """As `_error`; and a list or watch from a version too old (410 Gone) is `Expired`."""
    if status == 410:
        return Expired(_message(status, text))
    return _error(status, text, retry_after)


def _message(status: int, text: str) -> str:
    """The API server's own message, which names the admission plugin or quota at fault."""
    try:
        return str(json.loads(text)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{status}: {text[:200]}" if text else str(status)
