"""Builders of a job's children: its replica pods and, for gangs, the headless Service and
(with gang admission) the PodGroup.

Pure: they return plain dicts for the API and talk to nobody. Names are deterministic
(`<job>-<rank>`, the Service and the PodGroup named after the job), so creating twice is
harmless: the second create gets AlreadyExists.
"""

from __future__ import annotations

import copy
from typing import Any

from .gangs import API_GROUP
from .models import (
    API_VERSION,
    ENV_JOB_NAME,
    ENV_RANK,
    ENV_REPLICAS,
    JOB_NAME_LABEL,
    KIND,
    RANK_LABEL,
    UCloudJobSpec,
)

_ENV_NAMES = frozenset({ENV_JOB_NAME, ENV_RANK, ENV_REPLICAS})


def pod_name(job_name: str, rank: int) -> str:
    return f"{job_name}-{rank}"


def owner_reference(job_name: str, job_uid: str) -> dict[str, Any]:
    """A controller reference: deleting the job garbage-collects its children."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job_name,
        "uid": job_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_replica_pod(
    namespace: str,
    job_name: str,
    job_uid: str,
    spec: UCloudJobSpec,
    rank: int,
    *,
    pod_group: str | None = None,
) -> dict[str, Any]:
    """Replica `rank`'s pod; `pod_group`: the PodGroup it is placed with, under gang admission."""
    template = spec.template.model_dump(by_alias=True, exclude_none=True)
    metadata = template.get("metadata") or {}
    pod_spec = copy.deepcopy(template["spec"])
    env = [
        {"name": ENV_JOB_NAME, "value": job_name},
        {"name": ENV_RANK, "value": str(rank)},
        {"name": ENV_REPLICAS, "value": str(spec.replicas)},
    ]
    for field in ("initContainers", "containers"):
        for container in pod_spec.get(field) or []:
            own = [e for e in container.get("env") or [] if e.get("name") not in _ENV_NAMES]
            container["env"] = own + env
    pod_spec["restartPolicy"] = "Never"
    pod_spec["hostname"] = pod_name(job_name, rank)
    if spec.replicas > 1:
        pod_spec["subdomain"] = job_name  # <job>-<rank>.<job> resolves through the Service
    if pod_group is not None:
        pod_spec["schedulingGroup"] = {"podGroupName": pod_group}
    labels = {
        **(metadata.get("labels") or {}),
        JOB_NAME_LABEL: job_name,
        RANK_LABEL: str(rank),
    }
    pod_metadata: dict[str, Any] = {
        "name": pod_name(job_name, rank),
        "namespace": namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(job_name, job_uid)],
    }
    if metadata.get("annotations"):
        pod_metadata["annotations"] = dict(metadata["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_metadata, "spec": pod_spec}


def build_service(namespace: str, job_name: str, job_uid: str) -> dict[str, Any]:
    """A headless Service: stable DNS names for the replicas of a gang."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _named_after_job(namespace, job_name, job_uid),
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: job_name},
            # Replicas look each other up while starting, before any readiness.
            "publishNotReadyAddresses": True,
        },
    }


def build_pod_group(
    namespace: str, job_name: str, job_uid: str, spec: UCloudJobSpec, api_version: str
) -> dict[str, Any]:
    """The PodGroup of a gang: all `replicas` pods placed at once or none (`api_version`: the
    scheduling.k8s.io version the API server serves, gangs.served_version)."""
    group_spec: dict[str, Any] = {"schedulingPolicy": {"gang": {"minCount": spec.replicas}}}
    priority_class = (spec.template.spec.model_extra or {}).get("priorityClassName")
    if api_version != "v1alpha2" and isinstance(priority_class, str):
        # 1.37's scheduler refuses a group whose pods' priority differs from its own, and the
        # group's comes from its class (1.36 forbids the field without its preemption gate).
        group_spec["priorityClassName"] = priority_class
    return {
        "apiVersion": f"{API_GROUP}/{api_version}",
        "kind": "PodGroup",
        "metadata": _named_after_job(namespace, job_name, job_uid),
        "spec": group_spec,
    }


def _named_after_job(namespace: str, job_name: str, job_uid: str) -> dict[str, Any]:
    """The metadata of a child that is one per job: its name is the job's."""
    return {
        "name": job_name,
        "namespace": namespace,
        "labels": {JOB_NAME_LABEL: job_name},
        "ownerReferences": [owner_reference(job_name, job_uid)],
    }
