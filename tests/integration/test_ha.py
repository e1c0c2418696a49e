"""Two operator processes at once: exactly one acts (it holds the Lease); kill it and the other
takes over within the lease duration."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, exits, history
from tests.support.operator import OperatorProcess
from ucloud_operator.models import JobState

TAKEOVER_BOUND = 15 + 2 + 10  # lease duration + one retry period + a pass, in seconds


def leader_flag(process: OperatorProcess) -> float:
    return process.scrape().value("ucloud_leader")


@pytest.fixture
def standby(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    second = OperatorProcess(operator.kubeconfig, operator.log.with_name("standby.log"))
    second.start()
    yield second
    second.kill(signal.SIGTERM)  # a clean stop releases the Lease at once
    operator.ensure_running()


def test_exactly_one_acts_and_the_standby_takes_over(
    cluster: Cluster, operator: OperatorProcess, standby: OperatorProcess
) -> None:
    standby.scrape()  # it serves metrics
    cluster.create_job("first", annotations=exits(0))
    cluster.wait_for_state("first", JobState.SUCCESS)
    assert leader_flag(operator) == 1.0
    assert leader_flag(standby) == 0.0
    # Each transition was written once: the standby wrote nothing.
    assert history(cluster.status("first")) == [
        JobState.IN_QUEUE,
        JobState.RUNNING,
        JobState.SUCCESS,
    ]

    operator.kill()  # SIGKILL: the Lease is not released and must run out
    killed_at = time.monotonic()
    cluster.create_job("second", replicas=2)
    cluster.wait_for_state("second", JobState.RUNNING, timeout=TAKEOVER_BOUND + 30)
    took = time.monotonic() - killed_at
    assert leader_flag(standby) == 1.0
    assert took < TAKEOVER_BOUND + 10, f"takeover took {took:.1f}s"
    print(f"takeover after SIGKILL: {took:.1f}s")
