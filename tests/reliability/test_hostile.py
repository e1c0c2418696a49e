"""A corpus of malformed UCloudJobs: each is refused by the API server with a clear message, or
ends FAILURE with a clear reason. The operator never crashes and no job is left stuck."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster, busybox
from tests.support.operator import OperatorProcess
from ucloud_operator.models import API_VERSION, KIND, JobState, Reason

BASE: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {"name": "hostile"},
    "spec": {"replicas": 1, "template": {"spec": busybox()}},
}
BIG = "x" * (300 * 1024)


def job_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted paths set (a value of ... deletes the field)."""
    body = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return body


CONTAINERS = "spec__template__spec__containers"
# (id, body, a piece of the API server's message)
REFUSED = [
    ("replicas-string", job_with(spec__replicas="two"), "must be of type integer"),
    ("replicas-zero", job_with(spec__replicas=0), "greater than or equal to 1"),
    ("replicas-negative", job_with(spec__replicas=-1), "greater than or equal to 1"),
    ("replicas-1001", job_with(spec__replicas=1001), "less than or equal to 1000"),
    ("replicas-huge", job_with(spec__replicas=10**15), "less than or equal to 1000"),
    ("replicas-float", job_with(spec__replicas=1.5), "must be of type integer"),
    ("deadline-zero", job_with(spec__activeDeadlineSeconds=0), "greater than or equal to 1"),
    ("deadline-negative", job_with(spec__activeDeadlineSeconds=-60), "greater than or equal"),
    ("deadline-huge", job_with(spec__activeDeadlineSeconds=2**40), "less than or equal to"),
    ("deadline-string", job_with(spec__activeDeadlineSeconds="soon"), "must be of type integer"),
    ("cancel-string", job_with(spec__cancel="yes"), "must be of type boolean"),
    ("no-spec", job_with(spec=...), "spec: Required value"),
    ("spec-string", job_with(spec="run it"), "must be of type object"),
    ("no-template", job_with(spec__template=...), "template: Required value"),
    ("no-pod-spec", job_with(spec__template__spec=...), "spec: Required value"),
    ("no-containers", job_with(spec__template__spec__containers=...), "Required value"),
    ("empty-containers", job_with(spec__template__spec__containers=[]), "at least 1 items"),
    ("containers-string", job_with(spec__template__spec__containers="main"), "must be of type"),
    ("container-no-image", job_with(**{f"{CONTAINERS}__0__image": ...}), "image: Required"),
    ("container-no-name", job_with(**{f"{CONTAINERS}__0__name": ...}), "name: Required"),
    ("container-empty-image", job_with(**{f"{CONTAINERS}__0__image": ""}), "at least 1 chars"),
    ("restart-always", job_with(spec__template__spec__restartPolicy="Always"), "Unsupported"),
    ("name-too-long", job_with(metadata__name="a" * 60), "at most 59 characters"),
    ("name-digit", job_with(metadata__name="9lives"), "DNS-1035 label"),
    ("name-dot", job_with(metadata__name="my.job"), "DNS-1035 label"),
    ("name-upper", job_with(metadata__name="Job"), "lowercase"),
    ("job-annotations-huge", job_with(metadata__annotations={"note": BIG}), "Too long"),
]
# Accepted by the schema (the template keeps unknown PodSpec fields as written) but refused when
# the operator creates the pod, or by the operator's own pod policy: FAILURE with a reason.
FAILING = [
    (
        "env-without-name",
        job_with(**{f"{CONTAINERS}__0__env": [{"value": "x"}]}),
        Reason.POD_CREATION_FAILED,
    ),
    (
        "bad-quantity",
        job_with(**{f"{CONTAINERS}__0__resources": {"requests": {"cpu": "lots"}}}),
        Reason.POD_CREATION_FAILED,
    ),
    (
        "mount-without-volume",
        job_with(**{f"{CONTAINERS}__0__volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        Reason.POD_CREATION_FAILED,
    ),
    (
        "pod-annotations-huge",
        job_with(spec__template__metadata={"annotations": {"n": BIG}}),
        Reason.POD_CREATION_FAILED,
    ),
    (
        "privileged",
        job_with(**{f"{CONTAINERS}__0__securityContext": {"privileged": True}}),
        Reason.TEMPLATE_NOT_ALLOWED,
    ),
    ("host-pid", job_with(spec__template__spec__hostPID=True), Reason.TEMPLATE_NOT_ALLOWED),
]
# Changes to an existing job that the API server refuses.
UPDATES = [
    ("cancel-back-to-false", {"cancel": True}, {"cancel": False}, "cannot be set back to false"),
    ("replicas-changed", {}, {"replicas": 2}, "spec.replicas is immutable"),
    (
        "image-changed",
        {},
        {"template": {"spec": {"containers": [{"name": "main", "image": "alpine"}]}}},
        "spec.template is immutable",
    ),
    (
        "template-annotation-added",
        {},
        {
            "template": {
                "metadata": {"annotations": {"a": "b"}},
                "spec": BASE["spec"]["template"]["spec"],
            }
        },
        "spec.template is immutable",
    ),
]


@pytest.mark.parametrize(("body", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_by_the_api_server(cluster: Cluster, body: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiException) as refused:
        cluster.create(body)
    assert refused.value.status in (400, 413, 422), refused.value.body
    assert message in refused.value.body, refused.value.body


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING])
def test_ends_in_failure_with_a_reason(
    cluster: Cluster, operator: OperatorProcess, body: dict[str, Any], reason: str
) -> None:
    cluster.create(body)
    status = cluster.wait_for_state("hostile", JobState.FAILURE, reason)
    assert status["message"]
    assert operator.alive()


@pytest.mark.parametrize(
    ("first", "change", "message"), [c[1:] for c in UPDATES], ids=[c[0] for c in UPDATES]
)
def test_update_refused(
    cluster: Cluster, first: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    cluster.create(job_with(**{f"spec__{k}": v for k, v in first.items()}))
    with pytest.raises(ApiException) as refused:
        cluster.patch_spec("hostile", change)
    assert message in refused.value.body


def test_after_the_corpus_the_operator_still_runs_an_ordinary_job(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.create_job("ordinary", replicas=2)
    cluster.wait_for_state("ordinary", JobState.RUNNING, Reason.ALL_REPLICAS_RUNNING)
    assert operator.alive()
