"""Two operator processes at once: exactly one acts (it holds the Lease); kill it and the other
takes over within the lease duration."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.cluster import Cluster, OperatorProcess
from tests.integration.test_observability import get, metric

TAKEOVER_BOUND = 15 + 2 + 10  # lease duration + one retry period + a pass, in seconds


def leader_flag(process: OperatorProcess) -> float | None:
    status, text = get(process.metrics_url)
    return metric(text, "ucloud_leader") if status == 200 else None


@pytest.fixture
def standby(operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory) -> (
    Iterator[OperatorProcess]
):
    second = OperatorProcess(operator.kubeconfig, operator.log_path.with_name("standby.log"))
    second.start()
    yield second
    second.kill(signal.SIGTERM)  # a clean stop releases the Lease at once
    if not operator.alive():
        operator.start()


def test_exactly_one_acts_and_the_standby_takes_over(
    cluster: Cluster, operator: OperatorProcess, standby: OperatorProcess
) -> None:
    cluster.wait_for("standby", "the standby to serve metrics",
                     lambda: leader_flag(standby) is not None)
    cluster.create_job("first", annotations={"ucloud.dk/test-exit-code": "0",
                                             "ucloud.dk/test-exit-after": "1s"})
    cluster.wait_for_state("first", "SUCCESS")
    assert leader_flag(operator) == 1.0
    assert leader_flag(standby) == 0.0
    # Each transition was written once: the standby wrote nothing.
    assert [u["state"] for u in cluster.status("first")["updates"]] == [
        "IN_QUEUE", "RUNNING", "SUCCESS"]

    operator.kill()  # SIGKILL: the Lease is not released and must run out
    killed_at = time.monotonic()
    cluster.create_job("second", replicas=2)
    cluster.wait_for_state("second", "RUNNING", timeout=TAKEOVER_BOUND + 30)
    took = time.monotonic() - killed_at
    assert leader_flag(standby) == 1.0
    assert took < TAKEOVER_BOUND + 10, f"takeover took {took:.1f}s"
    print(f"takeover after SIGKILL: {took:.1f}s")
