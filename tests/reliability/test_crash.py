"""SIGKILL the operator at random moments while many jobs live their lives, and restart it.

Every job must end in the state the rules give it, no pod may be created twice (a watch of the
test's own sees every pod UID), and expiries that fell due while the operator was down must fire
after the restart. `make test` runs a small crowd; `make soak` sets UCLOUD_CRASH_JOBS=200.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.cluster import Cluster, OperatorProcess
from tests.reliability.test_api_faults import PodCreations

JOBS = int(os.environ.get("UCLOUD_CRASH_JOBS", "30"))
KILLS = int(os.environ.get("UCLOUD_CRASH_KILLS", "3"))

# kind -> (template annotations, deadline, expected final state and reason)
KINDS = {
    "done": ({"ucloud.dk/test-exit-code": "0"}, None, ("SUCCESS", "Completed")),
    "exit": ({"ucloud.dk/test-exit-code": "3"}, None, ("SUCCESS", "NonZeroExit")),
    "evict": ({"ucloud.dk/test-evict": "true"}, None, ("FAILURE", "Evicted")),
    "timed": ({}, 4, ("EXPIRED", "DeadlineExceeded")),
    "cancel": ({}, None, ("SUCCESS", "Cancelled")),
}


@pytest.fixture
def killable(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    yield operator
    if not operator.alive():
        operator.start()


def test_random_sigkills_lose_no_job_and_create_no_pod_twice(
    cluster: Cluster, api_client: client.ApiClient, killable: OperatorProcess
) -> None:
    rng = random.Random(int(os.environ.get("UCLOUD_CRASH_SEED", "11")))
    creations = PodCreations(api_client, cluster.namespace)
    expected: dict[str, tuple[str, str]] = {}
    names = list(KINDS)
    for index in range(JOBS):
        kind = names[index % len(names)]
        annotations, deadline, outcome = KINDS[kind]
        if annotations:
            annotations = {**annotations, "ucloud.dk/test-exit-after": f"{rng.randint(1, 12)}s"}
        name = f"{kind}-{index}"
        cluster.create_job(name, replicas=rng.randint(1, 3), annotations=annotations,
                           deadline=deadline)
        expected[name] = outcome
    cancel_at = {name: rng.uniform(0, 8) for name in expected if name.startswith("cancel")}
    kill_at = sorted(rng.uniform(0.5, 10) for _ in range(KILLS))
    started = time.monotonic()
    while cancel_at or kill_at:  # a schedule of cancels and SIGKILLs, at most ~20 s long
        now = time.monotonic() - started
        for name in [n for n, at in cancel_at.items() if at <= now]:
            cluster.patch_spec(name, {"cancel": True})
            del cancel_at[name]
        if kill_at and kill_at[0] <= now:
            kill_at.pop(0)
            killable.kill()  # SIGKILL, mid-whatever
            time.sleep(rng.uniform(0, 2))  # down for a while: the schedule goes on without it
            killable.start()
        time.sleep(0.05)  # the schedule's tick
    if not killable.alive():
        killable.start()

    # A restart waits out the killed process's Lease (15 s) before acting.
    deadline = 90 + JOBS
    for name, (state, reason) in expected.items():
        status = cluster.wait_for_state(name, state, reason, timeout=deadline)
        states = [u["state"] for u in status["updates"]]
        assert states[0] == "IN_QUEUE", (name, states)
        assert all(a != b for a, b in itertools.pairwise(states)), (name, states)
        assert sum(s in ("SUCCESS", "FAILURE", "EXPIRED") for s in states) == 1, (name, states)
    creations.stop()
    twice = {name: uids for name, uids in creations.uids.items() if len(uids) > 1}
    assert not twice, f"pods created twice: {twice}"
    assert killable.starts >= KILLS + 1
