"""Gang admission: Kubernetes' Workload API places the replicas of a job all or none.

A job of more than one replica gets a PodGroup named after it, with a gang policy of minimum
`replicas`, and each replica pod names the group (`spec.schedulingGroup.podGroupName`).
kube-scheduler then binds every replica or none, so two gangs on a busy cluster never each hold
part of it while waiting for the rest.

The API moved between releases and no version is served by both of those supported: 1.37 serves
`scheduling.k8s.io/v1beta1` (off unless `--runtime-config` asks for it), 1.36 the alpha
`v1alpha2` (behind feature gates). The fields used here are the same in both; the scheduler's
condition on the group was renamed.

Pure: the choice of a version from discovery, and what a group's status says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .replicas import as_list, controller_uid

API_GROUP = "scheduling.k8s.io"
PLURAL = "podgroups"
# Newest first: the first one discovery shows serving podgroups is used.
VERSIONS = ("v1beta1", "v1alpha2")
# The scheduler's verdict on a group: `PodGroupInitiallyScheduled` in 1.37 (True for good once
# placed), `PodGroupScheduled` in 1.36.
SCHEDULED_CONDITIONS = ("PodGroupInitiallyScheduled", "PodGroupScheduled")

MODES = ("auto", "on", "off")  # --gang-admission


class GangAdmissionUnavailable(Exception):  # noqa: N818 - it reads as a sentence
    """`--gang-admission=on` where the API server serves no PodGroups."""


@dataclass(frozen=True, slots=True)
class GangPlacement:
    """The scheduler's verdict on a job's PodGroup."""

    owner_uid: str | None  # the job instance owning the group
    scheduled: bool | None = None  # None: no verdict yet (fewer pods than minCount, or new)
    reason: str = ""  # Scheduled, Unschedulable or SchedulerError
    message: str = ""


def served_version(resources: Mapping[str, Iterable[str]]) -> str | None:
    """The version to use, from discovery (`resources`: each served version of
    scheduling.k8s.io and its resources), or None when none serves podgroups. (1.36 serves
    v1beta1 too, with PriorityClasses only: the resource must be there, not just the version.)"""
    for version in VERSIONS:
        if PLURAL in resources.get(version, ()):
            return version
    return None


def resolve(mode: str, served: str | None) -> str | None:
    """The version gang admission uses in `mode`, or None when it is off."""
    if mode == "off":
        return None
    if mode == "on" and served is None:
        raise GangAdmissionUnavailable(
            "--gang-admission=on, but the API server serves no podgroups in "
            f"{API_GROUP} ({' or '.join(VERSIONS)}). Kubernetes 1.37: feature gate "
            "GenericWorkload on kube-apiserver, kube-scheduler and kube-controller-manager, "
            f"and --runtime-config={API_GROUP}/v1beta1=true; 1.36: gates GenericWorkload and "
            f"GangScheduling, and --runtime-config={API_GROUP}/v1alpha2=true. "
            "Or use --gang-admission=auto or off."
        )
    return served


def placement_of(body: Mapping[str, Any]) -> GangPlacement:
    """What a PodGroup's status says about its placement. Total: whatever the body holds."""
    metadata, status = body.get("metadata"), body.get("status")
    owners = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    owner = controller_uid(owners)
    conditions = as_list(status.get("conditions")) if isinstance(status, Mapping) else []
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") in SCHEDULED_CONDITIONS:
            return GangPlacement(
                owner_uid=owner,
                scheduled=condition.get("status") == "True",
                reason=str(condition.get("reason") or ""),
                message=str(condition.get("message") or ""),
            )
    return GangPlacement(owner_uid=owner)
