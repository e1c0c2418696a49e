"""The index's compact job: it reads back into the same `Job` as the watch's body, and never
raises on a body of any shape."""

from __future__ import annotations

from typing import Any

import pytest

from ucloud_operator.jobs import StoredJob, read_job
from ucloud_operator.models import JobState

from .builders import in_state, job, pod


def body_of(the_job: Any) -> dict[str, Any]:
    """A watch body as the API server sends it, with fields the operator never reads."""
    spec = the_job.spec.model_dump(by_alias=True, exclude_none=True)
    return {
        "apiVersion": "ucloud.dk/v1",
        "kind": "UCloudJob",
        "metadata": {
            "name": the_job.name,
            "namespace": the_job.namespace,
            "uid": the_job.uid,
            "generation": the_job.generation,
            "resourceVersion": "42",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        },
        "spec": spec,
        "status": the_job.status.to_wire(),
    }


def test_a_stored_job_reads_back_as_the_body_reads() -> None:
    running = in_state(job(replicas=2), JobState.RUNNING, pod(0).running(), pod(1).running())
    body = body_of(running)
    stored = StoredJob.of(body)
    assert stored.job() == read_job(body)
    assert (stored.namespace, stored.name, stored.state) == ("default", "sim", JobState.RUNNING)


def test_a_stored_job_keeps_only_what_a_pass_reads() -> None:
    stored = StoredJob.of(body_of(in_state(job(), JobState.IN_QUEUE)))
    assert b"managedFields" not in stored.body
    assert b"last-applied-configuration" not in stored.body
    assert b"resourceVersion" not in stored.body


@pytest.mark.parametrize(
    "status",
    [None, [], "RUNNING", {"state": ["RUNNING"]}, {"state": "PAUSED"}, {"state": 7}],
)
def test_an_odd_status_is_stored_without_a_state(status: Any) -> None:
    body = {"metadata": {"name": "odd", "namespace": "d", "uid": "u"},
            "spec": {"replicas": 1}, "status": status}
    stored = StoredJob.of(body)
    assert stored.state is None
    assert stored.job().status.state is None
    assert stored.job() == read_job(body)


def test_an_unreadable_spec_is_kept_for_rule_3a() -> None:
    body = {"metadata": {"name": "odd", "namespace": "d", "uid": "u"},
            "spec": {"replicas": "many", "template": {}}}
    read = StoredJob.of(body).job()
    assert read.spec is None
    assert read.spec_error is not None and "replicas" in read.spec_error
