"""API faults between the operator and the API server: 429, 500, 503, stalls, resets and cut
watch streams. Nothing is lost, no pod is created twice, and the request rate stays bounded."""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch

from tests.cluster import Cluster, OperatorProcess

from .faultproxy import FaultProxy

FAULT_RATE = 0.2


class PodCreations:
    """Every pod UID ever seen per name in a namespace, from a watch of the test's own."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.uids: dict[str, set[str]] = defaultdict(set)
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(api_client, namespace),
                                        daemon=True)
        self._thread.start()

    def _run(self, api_client: client.ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api_client)
        self._stopped = False
        while not self._stopped:  # a watch that ends is resumed: the test must see every pod
            try:
                for event in self._watch.stream(core.list_namespaced_pod, namespace,
                                                timeout_seconds=60):
                    pod = event["object"]
                    self.uids[pod.metadata.name].add(pod.metadata.uid)
            except Exception:  # a cut stream: the next listing sees every pod again
                continue

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()


@pytest.fixture
def faulty_operator(cluster: Cluster, operator: OperatorProcess, kubeconfig: str,
                    tmp_path: Path) -> Iterator[tuple[OperatorProcess, FaultProxy]]:
    proxy = FaultProxy(kubeconfig, FAULT_RATE)
    proxy.start()
    operator.kill(signal.SIGTERM)  # the session's operator steps aside (and frees the Lease)
    behind = OperatorProcess(proxy.kubeconfig(tmp_path / "proxy.kubeconfig"),
                             operator.log_path.with_name("faults.log"),
                             # One process: a leader that cannot renew its Lease for the
                             # renew deadline (10 s) must stop acting, and 25 s stalls on
                             # the Lease would make it step down and back, which is not
                             # what this test is about (test_ha tests the election).
                             extra_args=("--namespace", cluster.namespace,
                                         "--no-leader-elect"))
    behind.start()
    yield behind, proxy
    behind.kill(signal.SIGTERM)
    proxy.stop()
    operator.start()


def test_faults_lose_nothing_duplicate_nothing_and_stay_bounded(
    cluster: Cluster, api_client: client.ApiClient,
    faulty_operator: tuple[OperatorProcess, FaultProxy],
) -> None:
    behind, proxy = faulty_operator
    cluster.operator = behind  # evidence on failure comes from the operator behind the proxy
    creations = PodCreations(api_client, cluster.namespace)
    started = time.monotonic()
    finishing = [f"done-{i}" for i in range(6)]
    for name in finishing:
        cluster.create_job(name, replicas=2, annotations={"ucloud.dk/test-exit-code": "0",
                                                          "ucloud.dk/test-exit-after": "3s"})
    cluster.create_job("cancelled", replicas=2)
    cluster.create_job("timed", deadline=5)
    cluster.wait_for_state("cancelled", "RUNNING", timeout=120)
    cluster.patch_spec("cancelled", {"cancel": True})

    for name in finishing:
        status = cluster.wait_for_state(name, "SUCCESS", "Completed", timeout=180)
        assert [u["state"] for u in status["updates"]] in (
            ["IN_QUEUE", "RUNNING", "SUCCESS"], ["IN_QUEUE", "SUCCESS"])
    cancelled = cluster.wait_for_state("cancelled", "SUCCESS", "Cancelled", timeout=180)
    assert [u["state"] for u in cancelled["updates"]][-2:] == ["CANCELING", "SUCCESS"]
    cluster.wait_for_state("timed", "EXPIRED", "DeadlineExceeded", timeout=180)
    creations.stop()
    elapsed = time.monotonic() - started

    twice = {name: uids for name, uids in creations.uids.items() if len(uids) > 1}
    assert not twice, f"pods created twice: {twice}"
    assert sum(proxy.stats.faults.values()) > 0, "no fault was injected"
    peak = max(proxy.stats.per_second.values())
    rate = proxy.stats.requests / elapsed
    print(f"faults {dict(proxy.stats.faults)}; {proxy.stats.requests} requests in "
          f"{elapsed:.0f}s ({rate:.1f}/s), peak {peak}/s")
    assert peak < 100 and rate < 20, "the request rate was not bounded"
    assert behind.alive()
