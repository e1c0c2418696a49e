"""/metrics counts what the operator did; /healthz and /readyz answer."""

from __future__ import annotations

import json
import urllib.request

from tests.cluster import Cluster, OperatorProcess


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_transitions_and_jobs(cluster: Cluster, operator: OperatorProcess) -> None:
    before = cluster.wait_for("metrics", "/metrics to answer",
                              lambda: get(operator.metrics_url)[1])
    done = ("ucloud_job_transitions_total", {"from_state": "RUNNING", "to_state": "SUCCESS",
                                             "reason": "Completed"})
    start = metric(before, done[0], **done[1])
    cluster.create_job("counted", annotations={"ucloud.dk/test-exit-code": "0",
                                               "ucloud.dk/test-exit-after": "1s"})
    cluster.wait_for_state("counted", "SUCCESS", "Completed")

    def counted() -> str | None:
        text = get(operator.metrics_url)[1]
        return text if metric(text, done[0], **done[1]) >= start + 1 else None

    text = cluster.wait_for("counted", "the transition in /metrics", counted)
    assert metric(text, "ucloud_jobs", state="SUCCESS") >= 1
    assert metric(text, "ucloud_pod_event_to_status_seconds_count") >= 1
    assert metric(text, "ucloud_api_requests_total", verb="create", resource="pods",
                  code="201") >= 1
    assert metric(text, "ucloud_api_requests_total", verb="patch",
                  resource="ucloudjobs/status", code="200") >= 1
    assert metric(text, "ucloud_api_request_duration_seconds_count", verb="patch",
                  resource="ucloudjobs/status") >= 1


def test_healthz_and_readyz(operator: OperatorProcess, cluster: Cluster) -> None:
    for path in ("/healthz", "/readyz"):

        def answered(path: str = path) -> tuple[int, str] | None:
            status, body = get(operator.health_url + path)
            return (status, body) if status == 200 else None

        _, body = cluster.wait_for("probe", path, answered)
        assert json.loads(body)["ok"] is True
        assert "watcher for ucloudjobs" in body
    # The test's operator may read nodes: it tells a lost node from the node itself.
    assert json.loads(get(operator.health_url + "/readyz")[1])["nodes listed"] is True
    assert metric(get(operator.metrics_url)[1], "ucloud_node_facts") == 1
