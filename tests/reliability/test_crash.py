"""SIGKILL the operator at random moments while many jobs live their lives, and restart it.

Every job must end in the state the rules give it, no pod may be created twice (a watch of the
test's own sees every pod UID), and expiries that fell due while the operator was down must fire
after the restart. `make test` runs a small crowd; `make soak` sets UCLOUD_CRASH_JOBS=200.

The moments are counted in the operator's own progress, not in seconds: a kill or a cancel comes
once the jobs' histories hold a random number of state changes, so each lands wherever the crowd
is then, however fast or slow the machine.
"""

from __future__ import annotations

import itertools
import os
import random

from kubernetes import client

from tests.support.cluster import EVICT, EXIT_AFTER, Cluster, PodCreations, exits, history
from tests.support.operator import OperatorProcess
from tests.support.poll import poll
from ucloud_operator.models import FINAL_STATES, JobState, Reason

JOBS = int(os.environ.get("UCLOUD_CRASH_JOBS", "30"))
KILLS = int(os.environ.get("UCLOUD_CRASH_KILLS", "3"))

# kind -> (template annotations, deadline, expected final state and reason)
KINDS = {
    "done": (exits(0), None, (JobState.SUCCESS, Reason.COMPLETED)),
    "exit": (exits(3), None, (JobState.SUCCESS, Reason.NON_ZERO_EXIT)),
    "evict": ({EVICT: "true"}, None, (JobState.FAILURE, Reason.EVICTED)),
    "timed": ({}, 4, (JobState.EXPIRED, Reason.DEADLINE_EXCEEDED)),
    "cancel": ({}, None, (JobState.SUCCESS, Reason.CANCELLED)),
}


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
            annotations = {**annotations, EXIT_AFTER: f"{rng.randint(1, 12)}s"}
        name = f"{kind}-{index}"
        cluster.create_job(
            name, replicas=rng.randint(1, 3), annotations=annotations, deadline=deadline
        )
        expected[name] = outcome

    # Every job writes IN_QUEUE and then a final state or (the cancel kind, until cancelled)
    # RUNNING: 2 * JOBS state changes come whatever the order, so every step below is reached.
    steps = [(rng.randint(0, JOBS), name) for name in expected if name.startswith("cancel")]
    steps += [(rng.randint(0, 2 * JOBS - 1), None) for _ in range(KILLS)]
    # A restart waits out the killed process's Lease (15 s) before acting.
    patience = 90.0 + JOBS

    def written() -> int:
        return sum(len(history(job.get("status") or {})) for job in cluster.jobs())

    def crowd() -> str:
        lines = [
            f"  {job['metadata']['name']}: {history(job.get('status') or {})}"
            for job in cluster.jobs()
        ]
        return "\n".join([*lines, "--- operator log tail ---", killable.log_tail()])

    for count, cancel in sorted(steps, key=lambda step: step[0]):
        poll(f"{count} state changes written", lambda c=count: written() >= c, crowd, patience)
        if cancel is not None:
            cluster.patch_spec(cancel, {"cancel": True})
        else:
            killable.kill()  # SIGKILL, mid-whatever; its successor waits out its Lease
            killable.start()

    for name, (state, reason) in expected.items():
        status = cluster.wait_for_state(name, state, reason, timeout=patience)
        states = history(status)
        assert states[0] == JobState.IN_QUEUE, (name, states)
        assert all(a != b for a, b in itertools.pairwise(states)), (name, states)
        assert sum(s in FINAL_STATES for s in states) == 1, (name, states)
    creations.stop()
    assert not creations.twice(), f"pods created twice: {creations.twice()}"
    assert killable.starts >= KILLS + 1
