"""The index's compact job: it reads back into the same `Job` as the watch's body, and never
raises on a body of any shape."""

from __future__ import annotations

from typing import Any

import pytest

from ucloud_operator.jobs import ParsedJobs, StoredJob, read_job
from ucloud_operator.models import API_VERSION, KIND, JobState

from .builders import in_state, job, pod


def body_of(the_job: Any) -> dict[str, Any]:
    """A watch body as the API server sends it, with fields the operator never reads."""
    spec = the_job.spec.model_dump(by_alias=True, exclude_none=True)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
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
    body = {
        "metadata": {"name": "odd", "namespace": "d", "uid": "u"},
        "spec": {"replicas": 1},
        "status": status,
    }
    stored = StoredJob.of(body)
    assert stored.state is None
    assert stored.job().status.state is None
    assert stored.job() == read_job(body)


def test_an_unreadable_spec_is_kept_for_rule_3a() -> None:
    body = {
        "metadata": {"name": "odd", "namespace": "d", "uid": "u"},
        "spec": {"replicas": "many", "template": {}},
    }
    read = StoredJob.of(body).job()
    assert read.spec is None
    assert read.spec_error is not None and "replicas" in read.spec_error


def test_a_job_is_parsed_once_while_the_index_holds_it() -> None:
    parsed = ParsedJobs()
    queued = StoredJob.of(body_of(in_state(job(), JobState.IN_QUEUE)))
    first = parsed.job(queued)
    assert parsed.job(queued) is first
    # A job event stores a new StoredJob: the next pass reads the new one.
    running = StoredJob.of(body_of(in_state(job(), JobState.RUNNING, pod(0).running())))
    assert parsed.job(running).status.state == JobState.RUNNING
    assert len(parsed) == 1


def test_parsed_jobs_are_bounded_least_recently_used_first() -> None:
    parsed = ParsedJobs(size=2)
    a, b, c = (
        StoredJob.of({**body_of(job()), "metadata": {"name": n, "namespace": "d"}}) for n in "abc"
    )
    kept_a = parsed.job(a)
    parsed.job(b)
    parsed.job(a)  # a is used again: b is now the oldest
    parsed.job(c)
    assert len(parsed) == 2
    assert parsed.job(a) is kept_a
