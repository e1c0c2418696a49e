"""API faults between the operator and the API server: 429, 500, 503, stalls, resets and cut
watch streams. Nothing is lost, no pod is created twice, and the request rate stays bounded."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from tests.support.cluster import Cluster, PodCreations, exits, history
from tests.support.faultproxy import FaultProxy
from tests.support.operator import OperatorProcess
from ucloud_operator.models import JobState, Reason

FAULT_RATE = 0.2


@contextmanager
def operator_behind(
    fault_rate: float, cluster: Cluster, operator: OperatorProcess, kubeconfig: str, log: Path
) -> Iterator[tuple[OperatorProcess, FaultProxy]]:
    """The session's operator steps aside (freeing the Lease) for one that talks through a
    FaultProxy. One process: a leader that cannot renew its Lease for the renew deadline (10 s)
    must stop acting, and the proxy's stalls on the Lease would make it step down and back,
    which is not what these tests are about (test_ha tests the election)."""
    proxy = FaultProxy(kubeconfig, fault_rate)
    proxy.start()
    operator.kill(signal.SIGTERM)
    behind = OperatorProcess(
        proxy.kubeconfig(log.with_suffix(".kubeconfig")),
        operator.log.with_name(log.name),
        extra_args=("--namespace", cluster.namespace, "--no-leader-elect"),
    )
    behind.start()
    try:
        yield behind, proxy
    finally:
        behind.kill(signal.SIGTERM)
        proxy.stop()
        operator.ensure_running()


@pytest.fixture
def faulty_operator(
    cluster: Cluster, operator: OperatorProcess, kubeconfig: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, FaultProxy]]:
    with operator_behind(FAULT_RATE, cluster, operator, kubeconfig, tmp_path / "faults.log") as it:
        yield it


RETRY_AFTER_SECONDS = 4  # well above the client's own first backoffs (0.1 and 0.3 s)


@pytest.fixture
def proxied_operator(
    cluster: Cluster, operator: OperatorProcess, kubeconfig: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, FaultProxy]]:
    """Behind a proxy that injects no random fault: the test scripts its own."""
    with operator_behind(0.0, cluster, operator, kubeconfig, tmp_path / "retry-after.log") as it:
        yield it


def test_a_throttled_status_write_waits_as_long_as_retry_after_asks(
    cluster: Cluster, proxied_operator: tuple[OperatorProcess, FaultProxy]
) -> None:
    behind, proxy = proxied_operator
    cluster.operator = behind
    throttle = proxy.throttle("PATCH", "/status", times=2, retry_after=str(RETRY_AFTER_SECONDS))
    cluster.create_job("throttled")
    cluster.wait_for_state("throttled", JobState.RUNNING, timeout=60)
    first, second, third = throttle.answered[:3]
    assert [first[1], second[1], third[1]] == [429, 429, 0]
    waits = [second[0] - first[0], third[0] - second[0]]
    # At least what the server asked (the proxy's clock and the operator's agree on loopback);
    # not much more: the client waits once, it does not add its own backoff on top.
    assert all(RETRY_AFTER_SECONDS - 0.1 <= wait < RETRY_AFTER_SECONDS + 2 for wait in waits), waits


def test_faults_lose_nothing_duplicate_nothing_and_stay_bounded(
    cluster: Cluster,
    api_client: client.ApiClient,
    faulty_operator: tuple[OperatorProcess, FaultProxy],
) -> None:
    behind, proxy = faulty_operator
    cluster.operator = behind  # evidence on failure comes from the operator behind the proxy
    creations = PodCreations(api_client, cluster.namespace)
    started = time.monotonic()
    finishing = [f"done-{i}" for i in range(6)]
    for name in finishing:
        cluster.create_job(name, replicas=2, annotations=exits(0, after="3s"))
    cluster.create_job("cancelled", replicas=2)
    cluster.create_job("timed", deadline=5)
    cluster.wait_for_state("cancelled", JobState.RUNNING, timeout=120)
    cluster.patch_spec("cancelled", {"cancel": True})

    for name in finishing:
        status = cluster.wait_for_state(name, JobState.SUCCESS, Reason.COMPLETED, timeout=180)
        assert history(status) in (
            [JobState.IN_QUEUE, JobState.RUNNING, JobState.SUCCESS],
            [JobState.IN_QUEUE, JobState.SUCCESS],
        )
    cancelled = cluster.wait_for_state("cancelled", JobState.SUCCESS, Reason.CANCELLED, timeout=180)
    assert history(cancelled)[-2:] == [JobState.CANCELING, JobState.SUCCESS]
    cluster.wait_for_state("timed", JobState.EXPIRED, Reason.DEADLINE_EXCEEDED, timeout=180)
    creations.stop()
    elapsed = time.monotonic() - started

    assert not creations.twice(), f"pods created twice: {creations.twice()}"
    assert sum(proxy.stats.faults.values()) > 0, "no fault was injected"
    peak = max(proxy.stats.per_second.values())
    rate = proxy.stats.requests / elapsed
    print(
        f"faults {dict(proxy.stats.faults)}; {proxy.stats.requests} requests in "
        f"{elapsed:.0f}s ({rate:.1f}/s), peak {peak}/s"
    )
    assert peak < 100 and rate < 20, "the request rate was not bounded"
    assert behind.alive()
