"""The UCloudJob API (`ucloudjobs.ucloud.dk/v1`) as pydantic models.

These models are the one source of truth for the API: `crd.py` generates the CRD from them and the
state rules read and write them. Pure: no I/O, no kopf, no Kubernetes client.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "ucloud.dk"
VERSION = "v1"
KIND = "UCloudJob"
PLURAL = "ucloudjobs"
SINGULAR = "ucloudjob"
SHORT_NAMES = ("ujob", "ujobs")
API_VERSION = f"{GROUP}/{VERSION}"

# Labels and environment variables on every replica pod (docs/api.md, "Replica pods").
JOB_NAME_LABEL = "ucloud.dk/job-name"
RANK_LABEL = "ucloud.dk/rank"
ENV_JOB_NAME = "UCLOUD_JOB_NAME"
ENV_RANK = "UCLOUD_RANK"
ENV_REPLICAS = "UCLOUD_REPLICAS"

MAX_REPLICAS = 1000
MAX_JOB_NAME_LENGTH = 59
MAX_DEADLINE_SECONDS = 2**31 - 1  # about 68 years: keeps startedAt + deadline a valid timestamp
MAX_UPDATES = 64
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class JobState(StrEnum):
    """UCloud's six job states (README.md, "States"; docs/api.md, "The state rules")."""

    IN_QUEUE = "IN_QUEUE"
    RUNNING = "RUNNING"
    CANCELING = "CANCELING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCESS, JobState.FAILURE, JobState.EXPIRED})


class Reason(StrEnum):
    """Every reason the operator writes to `status.reason`, as docs/api.md names them."""

    # IN_QUEUE (rule 4): why not every replica runs yet.
    UNSCHEDULABLE = "Unschedulable"  # the scheduler found no node; message is its own
    IMAGE_PULLING = "ImagePulling"  # an image pull is failing, still within the grace
    CONTAINER_CREATING = "ContainerCreating"  # containers are being created
    WAITING_FOR_REPLICAS = "WaitingForReplicas"  # anything else: "k/n replicas running"
    # RUNNING (rule 4).
    ALL_REPLICAS_RUNNING = "AllReplicasRunning"
    # CANCELING and its SUCCESS (rule 2).
    CANCEL_REQUESTED = "CancelRequested"
    CANCELLED = "Cancelled"
    # FAILURE: the platform could not run the job (rule 3a).
    POD_CREATION_FAILED = "PodCreationFailed"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_CREATE_FAILED = "ContainerCreateFailed"
    EVICTED = "Evicted"
    NODE_LOST = "NodeLost"
    KUBELET_REJECTED = "KubeletRejected"
    POD_LOST = "PodLost"
    TEMPLATE_NOT_ALLOWED = "TemplateNotAllowed"
    # A spec the CRD should have refused (an old CRD, validation switched off): not in UCloud's
    # contract, which assumes the API server checked it.
    INVALID_SPEC = "InvalidSpec"
    # EXPIRED: the time allocation ran out (rule 3b).
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    # SUCCESS: a replica terminated on its own (rule 3c).
    COMPLETED = "Completed"
    NON_ZERO_EXIT = "NonZeroExit"


class _ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


# --- spec ------------------------------------------------------------------------------------


class Container(BaseModel):
    """A container of the pod template; fields beyond these are kept as written."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, description="The container's name.")
    image: str = Field(min_length=1, description="The container image.")


class PodSpec(BaseModel):
    """The parts of a PodSpec the operator checks; every other PodSpec field is kept as written."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    containers: list[Container] = Field(
        min_length=1, description="The replica's containers; at least one."
    )
    restart_policy: Literal["Never"] | None = Field(
        default=None,
        alias="restartPolicy",
        description="Must be Never (or left out): a UCloud job runs once.",
    )


class PodTemplate(BaseModel):
    """A PodTemplateSpec used for every replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata: dict[str, Any] | None = Field(
        default=None, description="Labels and annotations copied to every replica pod."
    )
    spec: PodSpec = Field(description="The pod spec of every replica.")


class UCloudJobSpec(_ApiModel):
    """What the user asks for."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.replicas == oldSelf.replicas",
                    "message": "spec.replicas is immutable",
                },
                {
                    "rule": "self.template == oldSelf.template",
                    "message": "spec.template is immutable",
                },
                {
                    "rule": "!oldSelf.cancel || self.cancel",
                    "message": "spec.cancel cannot be set back to false",
                },
            ]
        },
    )

    replicas: int = Field(
        default=1,
        ge=1,
        le=MAX_REPLICAS,
        description="How many replica pods run together (1..1000). Immutable.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DEADLINE_SECONDS,
        description=(
            "The time allocation in seconds, counted from the first time the job runs. "
            "May be raised (extend) or lowered."
        ),
    )
    cancel: bool = Field(
        default=False, description="Set true to cancel the job; cannot be set back to false."
    )
    template: PodTemplate = Field(description="The pod template of every replica. Immutable.")


# --- status ----------------------------------------------------------------------------------


class ReplicaStatus(_ApiModel):
    """One replica pod as last observed. An entry exists once the operator created the pod."""

    rank: int = Field(description="The replica's rank, 0..replicas-1.")
    pod: str = Field(description="The replica pod's name.")
    node: str | None = Field(default=None, description="The node the pod was scheduled to.")
    phase: str | None = Field(
        default=None, description="The pod's phase, or Missing once the pod is gone."
    )
    exit_code: int | None = Field(default=None, description="Exit code of the first container.")
    signal: int | None = Field(default=None, description="Signal that ended the container.")
    reason: str | None = Field(default=None, description="Why the pod or container is so.")
    message: str | None = Field(default=None, description="Details from the kubelet.")


class StatusUpdate(_ApiModel):
    """One state change in the job's history."""

    timestamp: datetime = Field(description="When the operator observed the change.")
    state: JobState = Field(description="The state entered.")
    reason: str | None = Field(default=None, description="The reason of the change.")
    message: str | None = Field(default=None, description="A human-readable explanation.")


class Condition(_ApiModel):
    """A metav1.Condition: Running and Finished."""

    type: str = Field(description="Running or Finished.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="For Finished: the final state. For Running: the reason.")
    message: str = Field(default="", description="A human-readable explanation.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="The spec generation.")


class UCloudJobStatus(_ApiModel):
    """What the operator observed. Written only by the operator, as one merge patch per change."""

    state: JobState | None = Field(default=None, description="One of UCloud's six job states.")
    reason: str | None = Field(default=None, description="A CamelCase machine word for the state.")
    message: str | None = Field(default=None, description="A human-readable explanation.")
    replicas: int | None = Field(default=None, description="Requested replicas.")
    running_replicas: int | None = Field(
        default=None, description="Replica pods in phase Running and not being deleted."
    )
    started_at: datetime | None = Field(
        default=None, description="The first time the job became RUNNING."
    )
    expires_at: datetime | None = Field(
        default=None, description="startedAt + activeDeadlineSeconds."
    )
    finished_at: datetime | None = Field(default=None, description="When a final state was set.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status was computed from."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Running and Finished, in the metav1.Condition shape."
    )
    replica_statuses: list[ReplicaStatus] = Field(
        default_factory=list, description="One entry per created replica pod, by rank."
    )
    updates: list[StatusUpdate] = Field(
        default_factory=list,
        max_length=MAX_UPDATES,
        description="Append-only state history, newest last, at most 64 kept.",
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class UCloudJob(BaseModel):
    """The whole custom resource, for the CRD's schema."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self.metadata.name.size() <= {MAX_JOB_NAME_LENGTH}",
                    "message": (
                        f"metadata.name must be at most {MAX_JOB_NAME_LENGTH} characters: "
                        "replica pods are named <job>-<rank> and use it as their hostname"
                    ),
                },
                {
                    "rule": f"self.metadata.name.matches('{DNS_1035_LABEL}')",
                    "message": (
                        "metadata.name must be a DNS-1035 label (lowercase letters, digits "
                        "and '-', starting with a letter): it names the job's Service"
                    ),
                },
            ]
        },
    )

    spec: UCloudJobSpec = Field(description="What the user asks for.")
    status: UCloudJobStatus | None = Field(default=None, description="What the operator saw.")
