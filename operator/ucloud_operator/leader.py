"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Every replica watches and keeps its indices warm; only the holder of the Lease reconciles.

No wall clock is compared with another's. A candidate records, with its own monotonic clock,
when it last saw the Lease record change (holder, renewTime, acquireTime, leaseTransitions or
resourceVersion), and takes the Lease over only once it has itself seen the record unchanged for
the lease's duration. So a holder whose clock runs hours ahead or behind is neither waited for
forever nor taken over at once. The holder renews every `retry` seconds, and stops acting when it
has not renewed for `renew_deadline` (shorter than `duration`), counted from before it sent the
read of its last successful renewal: it has stopped before any other candidate, which counts from
after it saw that renewal, may take over. Every write is a compare-and-swap on the
resourceVersion, so one candidate wins a takeover. renewTime and acquireTime are still written
with the writer's wall clock, for other tools to read.

`Election` holds the decisions (client-go's isLeaseValid and the checks of tryAcquireOrRenew),
given observations and monotonic times; `LeaderElector` does the reads and writes; `LeaseApi` is
what it reads and writes with (`KubernetesLeaseApi`, the official client in a thread).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"  # metav1.MicroTime


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0  # a Lease seen unchanged for this long is free
    renew_deadline: float = 10.0  # the holder stops acting when it could not renew for this long
    retry: float = 2.0  # how often to renew or try to acquire

    def __post_init__(self) -> None:
        # client-go refuses the same: a holder must stop before anyone may take over.
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError(f"need 0 < retry < renew_deadline < duration: {self}")


class LeaseError(Exception):
    """The API server answered a Lease request with an error (`status`; 0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class LeaseUnusable(Exception):  # noqa: N818 - it reads as "the Lease is unusable"
    """This identity may not read, create or update the Lease, or its namespace does not exist:
    waiting will not help."""


class LeaseApi(Protocol):
    """The reads and writes of one Lease, as JSON objects. Errors are `LeaseError`s."""

    async def get(self) -> dict[str, Any] | None:
        """The Lease; None when there is none."""
        ...

    async def create(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]: ...

    async def replace(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LeaseRecord:
    """What a candidate compares between two reads of the Lease: any difference means that
    someone wrote it in between."""

    holder: str  # "" when free
    duration: float | None  # leaseDurationSeconds
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None

    @classmethod
    def of(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        metadata = lease.get("metadata") or {}
        duration = spec.get("leaseDurationSeconds")
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(duration) if isinstance(duration, int | float) else None,
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=metadata.get("resourceVersion"),
        )


class Election:
    """The decisions of leader election, without I/O and without a clock of its own: every time
    it is given is this process's monotonic clock. The holder's renewTime is never read."""

    def __init__(self, identity: str, timing: LeaseTiming) -> None:
        self.identity = identity
        self.timing = timing
        self.observed: LeaseRecord | None = None  # the record last read or written
        self.observed_at = 0.0  # when it was first seen as it is now
        self.renewed_at: float | None = None  # start of our last successful acquire or renew

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """A read answered at `now` (None: there is no Lease). The record's clock restarts only
        when it changed."""
        if record != self.observed:
            self.observed = record
            self.observed_at = now

    def lease_duration(self) -> float:
        """The duration the holder promised (its leaseDurationSeconds), else ours."""
        record = self.observed
        return record.duration if record and record.duration else self.timing.duration

    def may_write(self, now: float) -> bool:
        """May this candidate write the Lease as its holder (create, take over or renew)? When
        there is none, when it is free or ours, or when we have seen it unchanged for its whole
        duration."""
        record = self.observed
        if record is None or not record.holder or record.holder == self.identity:
            return True
        return now - self.observed_at >= self.lease_duration()

    def wrote(self, record: LeaseRecord, started: float, now: float) -> None:
        """Our write succeeded: we hold `record`. `started` is before the attempt's first
        request was sent (so before the write took effect), `now` when the answer came."""
        self.observed = record
        self.observed_at = now
        self.renewed_at = started

    def leading(self, now: float) -> bool:
        """May this replica act? It holds the Lease as last seen and renewed it less than
        renew_deadline ago."""
        return (
            self.renewed_at is not None
            and self.observed is not None
            and self.observed.holder == self.identity
            and now - self.renewed_at < self.timing.renew_deadline
        )

    def step_down(self) -> None:
        """Stop acting now (before giving the Lease up)."""
        self.renewed_at = None


class LeaderElector:
    def __init__(
        self,
        api: LeaseApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        timing: LeaseTiming = LeaseTiming(),
        on_started_leading: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._timing = timing
        self._on_started_leading = on_started_leading
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self.election = Election(identity, timing)
        self._acting = False  # what the last step reported

    @property
    def is_leader(self) -> bool:
        """Read at every use: leadership ends at the renew deadline, also while a renewal
        hangs."""
        return self.election.leading(self._clock())

    async def check_access(self) -> None:
        """At start: `LeaseUnusable` when this identity may not get, create or update the Lease
        (403), or its namespace does not exist (404). Nothing is written (the writes are dry
        runs); other failures are left to `run`, which warns and keeps trying."""
        where = f"lease {self._namespace}/{self._name}"
        probe = self._body(self._wall(), transitions=0)
        verb = "get"
        try:
            lease = await self._api.get()
            if lease is None:
                verb = "create"
                try:
                    await self._api.create(probe, dry_run=True)
                except LeaseError as error:
                    if error.status != 409:  # created meanwhile
                        raise
            verb = "update"
            try:
                await self._api.replace(lease or probe, dry_run=True)
            except LeaseError as error:
                if error.status not in (404, 409):  # absent (authorized), or changed meanwhile
                    raise
        except LeaseError as error:
            if error.status == 403 or (error.status == 404 and verb == "create"):
                raise LeaseUnusable(
                    f"cannot use {where} for leader election ({verb}: {error.message}). Grant "
                    f"get, create and update on leases in namespace {self._namespace} (the "
                    "chart's leaderElection.enabled does), create the namespace, name another "
                    "with --lease-namespace, or run a single operator with --no-leader-elect"
                ) from error
            logger.warning("could not check %s (%s): trying on", where, error)
        except Exception as error:
            logger.warning("could not check %s (%s): trying on", where, error)

    async def run(self) -> None:
        while True:
            await self.step()
            await self._sleep(self._timing.retry)

    async def step(self) -> bool:
        """One attempt to acquire or renew; whether this replica may act after it."""
        started = self._clock()
        try:
            await self._try_acquire_or_renew(started)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any failure is a failed renewal, never the end of the loop
            logger.warning("lease %s/%s: %s", self._namespace, self._name, error)
        leading = self.election.leading(self._clock())
        if leading and not self._acting:
            logger.info("became the leader (lease %s/%s)", self._namespace, self._name)
            self._acting = True
            self._on_started_leading()
        elif not leading and self._acting:
            holder = self.election.observed.holder if self.election.observed else ""
            why = f"held by {holder}" if holder != self.identity else "not renewed in time"
            logger.warning(
                "lost the lease %s/%s (%s): stepping down", self._namespace, self._name, why
            )
            self._acting = False
        return leading

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a successor need not wait it out."""
        record = self.election.observed
        self.election.step_down()
        self._acting = False
        if record is None or record.holder != self.identity:
            return
        try:
            lease = await self._api.get()
            if lease is not None and LeaseRecord.of(lease).holder == self.identity:
                spec = {
                    key: value
                    for key, value in (lease.get("spec") or {}).items()
                    if key not in ("holderIdentity", "renewTime")
                }
                await self._api.replace({**lease, "spec": spec})
        except Exception as error:  # best effort: the Lease runs out anyway
            logger.warning("could not release the lease: %s", error)

    async def _try_acquire_or_renew(self, started: float) -> None:
        election = self.election
        lease = await self._api.get()
        now = self._clock()
        if lease is None:
            election.observe(None, now)
            body = self._body(self._wall(), transitions=0)
            try:
                created = await self._api.create(body)
            except LeaseError as error:
                if error.status == 409:
                    return  # another replica created it first
                raise
            election.wrote(LeaseRecord.of(created), started, self._clock())
            return
        record = LeaseRecord.of(lease)
        election.observe(record, now)
        if not election.may_write(now):
            return  # held, and seen changing less than a lease duration ago
        ours = record.holder == self.identity
        body = self._body(
            self._wall(),
            transitions=record.transitions + (0 if ours else 1),
            acquired=record.acquire_time if ours else None,
            resource_version=record.resource_version,
        )
        try:
            # The resourceVersion makes this a compare-and-swap: one replica wins a takeover.
            written = await self._api.replace(body)
        except LeaseError as error:
            if error.status == 409:
                return  # written meanwhile: the next read shows by whom
            raise
        election.wrote(LeaseRecord.of(written), started, self._clock())

    def _body(
        self,
        now: datetime,
        transitions: int,
        acquired: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        stamp = now.strftime(_STAMP)
        metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self._timing.duration),
                "acquireTime": acquired or stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }


class KubernetesLeaseApi:
    """`LeaseApi` with the official client, in a thread of its own: a renewal never queues
    behind the operator's writes, which have their own connections on the event loop."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        timeout: tuple[float, float] = (5.0, 4.0),
    ) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self._namespace = namespace
        self._name = name
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")

    async def get(self) -> dict[str, Any] | None:
        try:
            return await self._call(self._api.read_namespaced_lease, self._name, self._namespace)
        except LeaseError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        extra = {"dry_run": "All"} if dry_run else {}
        return await self._call(self._api.create_namespaced_lease, self._namespace, body, **extra)

    async def replace(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        extra = {"dry_run": "All"} if dry_run else {}
        return await self._call(
            self._api.replace_namespaced_lease, self._name, self._namespace, body, **extra
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        options = {"_preload_content": False, "_request_timeout": self._timeout}
        call = functools.partial(_decoded, method, *args, **kwargs, **options)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)


def _decoded(method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The JSON answer of one call of the official client; its errors as `LeaseError`."""
    try:
        response = method(*args, **kwargs)
    except ApiException as error:
        raise LeaseError(error.status or 0, _message(error)) from error
    decoded = json.loads(response.data)
    if not isinstance(decoded, dict):
        raise LeaseError(0, f"not a Lease: {str(decoded)[:200]}")
    return decoded


def _message(error: ApiException) -> str:
    """The API server's own message, else what the client says."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.body or error.reason or error).strip()[:300]
