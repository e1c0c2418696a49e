"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Every replica watches and keeps its indices warm; only the holder of the Lease reconciles. The
holder renews every `retry` seconds and steps down when it could not renew for `renew_deadline`,
which is shorter than `duration`, so two replicas never act at once while clocks agree. A
replica takes the Lease over when its holder has not renewed it for `duration`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0  # a Lease not renewed for this long is free
    renew_deadline: float = 10.0  # the holder steps down when it could not renew for this long
    retry: float = 2.0  # how often to renew or try to acquire


class LeaderElector:
    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        timing: LeaseTiming = LeaseTiming(),
        on_started_leading: Callable[[], None] = lambda: None,
    ) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._timing = timing
        self._on_started_leading = on_started_leading
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self.leading = asyncio.Event()
        self._renewed_at = 0.0  # monotonic time of the last successful renewal

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    async def run(self) -> None:
        while True:
            try:
                acquired = await self._try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure is a failed renewal, never the end of the loop
                logger.warning("lease %s/%s: %s", self._namespace, self._name, error)
                acquired = False
            now = time.monotonic()
            if acquired:
                self._renewed_at = now
                if not self.leading.is_set():
                    logger.info("became the leader (lease %s/%s)", self._namespace, self._name)
                    self.leading.set()
                    self._on_started_leading()
            elif self.leading.is_set() and now - self._renewed_at > self._timing.renew_deadline:
                logger.warning("lost the lease %s/%s: stepping down", self._namespace, self._name)
                self.leading.clear()
            await asyncio.sleep(self._timing.retry)

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a successor need not wait it out."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = await self._call(self._api.read_namespaced_lease, self._name, self._namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                await self._call(
                    self._api.replace_namespaced_lease, self._name, self._namespace, lease
                )
        except Exception as error:  # best effort: the Lease runs out anyway
            logger.warning("could not release the lease: %s", error)

    async def _try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        try:
            lease = await self._call(self._api.read_namespaced_lease, self._name, self._namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = self._lease_body(now, transitions=0)
            try:
                await self._call(self._api.create_namespaced_lease, self._namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False  # another replica created it first
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        duration = timedelta(seconds=spec.lease_duration_seconds or self._timing.duration)
        if holder and holder != self.identity and renewed and renewed + duration > now:
            return False  # held by a live leader
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        fresh = self._lease_body(
            now, transitions, acquired=spec.acquire_time if holder == self.identity else None
        )
        fresh["metadata"]["resourceVersion"] = lease.metadata.resource_version
        try:
            # The resourceVersion makes this a compare-and-swap: one replica wins a takeover.
            await self._call(self._api.replace_namespaced_lease, self._name, self._namespace, fresh)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _lease_body(
        self, now: datetime, transitions: int, acquired: datetime | None = None
    ) -> dict[str, Any]:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self._timing.duration),
                "acquireTime": acquired.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if acquired else stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(method, *args, _request_timeout=(5.0, self._timing.retry * 2))
        return await loop.run_in_executor(self._pool, call)
