"""/metrics counts what the operator did; /healthz and /readyz answer."""

from __future__ import annotations

import json

from tests.support.cluster import Cluster, exits
from tests.support.operator import OperatorProcess, Samples
from ucloud_operator.models import PLURAL, JobState, Reason

TRANSITIONS = "ucloud_job_transitions_total"


def test_metrics_count_transitions_and_jobs(cluster: Cluster, operator: OperatorProcess) -> None:
    done = {
        "from_state": JobState.RUNNING,
        "to_state": JobState.SUCCESS,
        "reason": Reason.COMPLETED,
    }
    start = operator.scrape().value(TRANSITIONS, **done)
    cluster.create_job("counted", annotations=exits(0))
    cluster.wait_for_state("counted", JobState.SUCCESS, Reason.COMPLETED)

    def counted() -> Samples | None:
        samples = operator.scrape()
        return samples if samples.value(TRANSITIONS, **done) >= start + 1 else None

    samples = cluster.wait_for("counted", "the transition in /metrics", counted)
    assert samples.value("ucloud_jobs", state=JobState.SUCCESS) >= 1
    assert samples.value("ucloud_pod_event_to_status_seconds_count") >= 1
    assert (
        samples.value("ucloud_api_requests_total", verb="create", resource="pods", code="201") >= 1
    )
    assert (
        samples.value(
            "ucloud_api_requests_total", verb="patch", resource=f"{PLURAL}/status", code="200"
        )
        >= 1
    )
    assert (
        samples.value(
            "ucloud_api_request_duration_seconds_count", verb="patch", resource=f"{PLURAL}/status"
        )
        >= 1
    )


def test_healthz_and_readyz(operator: OperatorProcess) -> None:
    for path in ("/healthz", "/readyz"):
        body = operator.probe(path)
        assert json.loads(body)["ok"] is True
        assert f"watcher for {PLURAL}" in body
    # The test's operator may read nodes: it tells a lost node from the node itself.
    assert json.loads(operator.probe("/readyz"))["nodes listed"] is True
    assert operator.scrape().value("ucloud_node_facts") == 1
