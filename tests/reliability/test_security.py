"""Pods are created in the job's namespace, so its Pod Security Admission applies to them; the
operator's own pod policy refuses privileged templates where no admission policy is installed."""

from __future__ import annotations

from tests.support.cluster import Cluster, busybox, exits
from ucloud_operator.models import JobState, Reason

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def test_restricted_namespace_refuses_a_non_compliant_template(cluster: Cluster) -> None:
    cluster.core.patch_namespace(cluster.namespace, {"metadata": {"labels": RESTRICTED}})
    cluster.create_job("plain")  # busybox as root, no seccomp: not "restricted"
    status = cluster.wait_for_state("plain", JobState.FAILURE, Reason.POD_CREATION_FAILED)
    assert "violates PodSecurity" in status["message"]
    assert cluster.pods("plain") == []


def test_restricted_namespace_admits_a_compliant_template(cluster: Cluster) -> None:
    cluster.core.patch_namespace(cluster.namespace, {"metadata": {"labels": RESTRICTED}})
    compliant = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **busybox(
            securityContext={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        ),
    }
    cluster.create_job("hardened", pod_spec=compliant)
    cluster.wait_for_state("hardened", JobState.RUNNING)


def test_operator_policy_refuses_host_namespaces_and_host_path(cluster: Cluster) -> None:
    cluster.create_job("hostnet", pod_spec={**busybox(), "hostNetwork": True})
    cluster.create_job(
        "hostpath", pod_spec={**busybox(), "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}
    )
    for name in ("hostnet", "hostpath"):
        cluster.wait_for_state(name, JobState.FAILURE, Reason.TEMPLATE_NOT_ALLOWED)
        assert cluster.pods(name) == []


def test_nothing_secret_in_the_operator_log(cluster: Cluster) -> None:
    cluster.create_job("logged", annotations=exits(0))
    cluster.wait_for_state("logged", JobState.SUCCESS)
    log = cluster.operator.log_since(0)  # written at DEBUG level
    assert "DEBUG" in log
    for secret in ("BEGIN CERTIFICATE", "PRIVATE KEY", "eyJhbGci", "Bearer ", "client-key-data"):
        assert secret not in log, f"{secret!r} found in the operator log"
