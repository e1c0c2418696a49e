"""A namespace of the cluster under test, as the cluster tiers act in it and wait on it.

The integration and reliability tiers run on `hack/cluster.sh up` (kwokctl, binary runtime, KWOK
fake nodes), or on UCLOUD_TEST_KUBECONFIG when set; the e2e tier on whatever its script
installed. KWOK plays the kubelet, driven by annotations on the pod template
(hack/kwok-stages.yaml); where no stage fits, a test writes the pod status itself.
Every wait polls the API with a deadline; a timeout prints the job's status, its events, its
pods and the operator's log tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.support.operator import Operator
from tests.support.poll import poll
from ucloud_operator import gangs
from ucloud_operator.models import API_VERSION, GROUP, JOB_NAME_LABEL, KIND, PLURAL, VERSION

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# What the KWOK stages of hack/kwok-stages.yaml read from a replica pod's annotations.
EXIT_CODE = "ucloud.dk/test-exit-code"  # Running, then terminated with this exit code ...
EXIT_AFTER = "ucloud.dk/test-exit-after"  # ... after this long (a Go duration)
EXIT_REASON = "ucloud.dk/test-exit-reason"  # ... with this reason (OOMKilled)
EXIT_SIGNAL = "ucloud.dk/test-exit-signal"  # ... by this signal
STAY_PENDING = "ucloud.dk/test-stay-pending"  # scheduled, never started
IMAGE_PULL_FAIL = "ucloud.dk/test-image-pull-fail"  # ErrImagePull
EVICT = "ucloud.dk/test-evict"  # Running, then evicted after EXIT_AFTER
NODE_LOST = "ucloud.dk/test-node-lost"  # Running, then its node lost after EXIT_AFTER
KUBELET_REJECT = "ucloud.dk/test-kubelet-reject"  # refused by the kubelet with this reason
DEADLINE_EXCEEDED = "ucloud.dk/test-deadline-exceeded"  # the pod's own deadline, after EXIT_AFTER


def exits(
    code: int = 0, after: str = "1s", *, reason: str | None = None, signal: int | None = None
) -> dict[str, str]:
    """Annotations for replicas that run, then exit with `code` after `after` (and the
    container's `reason` and `signal`, if given)."""
    annotations = {EXIT_CODE: str(code), EXIT_AFTER: after}
    if reason is not None:
        annotations[EXIT_REASON] = reason
    if signal is not None:
        annotations[EXIT_SIGNAL] = str(signal)
    return annotations


def busybox(**container: Any) -> dict[str, Any]:
    """The pod spec of one busybox container named main, with `container`'s fields."""
    return {"containers": [{"name": "main", "image": "busybox", **container}]}


def pod_status(phase: str, state: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A pod status as a kubelet writes it, its one container (main, busybox) in `state`."""
    container = {
        "name": "main",
        "image": "busybox",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }
    return {"phase": phase, "containerStatuses": [container], **fields}


def history(status: Mapping[str, Any]) -> list[str]:
    """The states of the job's status history, oldest first."""
    return [update["state"] for update in status.get("updates") or []]


def kubectl(
    binary: str, kubeconfig: str, *args: str, check: bool = True, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--kubeconfig", kubeconfig, *args],
        check=check,
        capture_output=True,
        text=True,
        input=input_text,
    )


def served_pod_group_version(binary: str, kubeconfig: str) -> str | None:
    """The scheduling.k8s.io version serving PodGroups on the cluster, as the operator's
    discovery finds it; None where the Workload API is not served."""

    def get(path: str) -> Any:
        return json.loads(kubectl(binary, kubeconfig, "get", "--raw", path).stdout)

    group = f"/apis/{gangs.API_GROUP}"
    served = {
        entry["version"]: [r["name"] for r in get(f"{group}/{entry['version']}")["resources"]]
        for entry in get(group)["versions"]
    }
    return gangs.served_version(served)


def create_namespace(core: client.CoreV1Api, name: str, timeout: float = 30.0) -> None:
    """Create the namespace and wait for its ServiceAccount "default": the API server refuses
    pods before the ServiceAccount controller has made it."""
    core.create_namespace({"metadata": {"name": name}})
    poll(
        f"ServiceAccount default in {name}",
        lambda: core.read_namespaced_service_account("default", name),
        lambda: "",
        timeout,
    )


class Cluster:
    """What a test does to the cluster, in one namespace, and how it waits for the operator."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        operator: Operator,
        timeout: float = 30.0,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.operator = operator  # whose log tail a failed wait prints
        self.timeout = timeout  # of a wait that names none

    # --- jobs ---

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a UCloudJob from a whole body."""
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def create_job(
        self,
        name: str,
        replicas: int = 1,
        *,
        annotations: dict[str, str] | None = None,
        deadline: int | None = None,
        pod_spec: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "replicas": replicas,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": pod_spec or busybox(),
            },
        }
        if deadline is not None:
            spec["activeDeadlineSeconds"] = deadline
        return self.create(
            {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
        )

    def job(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def jobs(self) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return listed["items"]  # type: ignore[no-any-return]

    def status(self, name: str) -> dict[str, Any]:
        return self.job(name).get("status") or {}

    def patch_job(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.patch_job(name, {"spec": spec})

    def delete_job(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as error:
            if not (missing_ok and error.status == 404):
                raise

    # --- what the operator makes: pods, Services, Events ---

    def pods(self, job: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(  # type: ignore[no-any-return]
            self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}"
        ).items

    def pod_uids(self, job: str) -> dict[str, str]:
        return {p.metadata.name: p.metadata.uid for p in self.pods(job)}

    def patch_pod_status(self, name: str, status: dict[str, Any]) -> None:
        """Play the kubelet where no KWOK stage fits."""
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def services(self, name: str) -> list[client.V1Service]:
        """The job's headless Service (named as the job), if it has one."""
        return self.core.list_namespaced_service(  # type: ignore[no-any-return]
            self.namespace, field_selector=f"metadata.name={name}"
        ).items

    def events(
        self, name: str, kind: str = KIND, reason: str | None = None
    ) -> list[client.CoreV1Event]:
        """The Events of the job `name` (or of the object of `kind`), of `reason` if given."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        found = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        return [e for e in found if reason is None or e.reason == reason]

    # --- waiting ---

    def evidence(self, name: str) -> str:
        try:
            status = yaml.safe_dump(self.status(name), sort_keys=False)
        except ApiException as error:
            status = f"(job not readable: {error.status})\n"
        try:
            events = "\n".join(f"  {e.type} {e.reason}: {e.message}" for e in self.events(name))
            pods = "\n".join(
                f"  {p.metadata.name}: {p.status.phase} {p.status.reason or ''}"
                for p in self.pods(name)
            )
        except ApiException as error:
            events = pods = f"  (not readable: {error.status})"
        return (
            f"--- job {self.namespace}/{name} status ---\n{status}"
            f"--- events ---\n{events}\n--- pods ---\n{pods}\n"
            f"--- operator log tail ---\n{self.operator.log_tail()}"
        )

    def wait_for(
        self, name: str, what: str, check: Callable[[], T | None], timeout: float | None = None
    ) -> T:
        """Poll `check` until it returns a truthy value; on timeout fail with the evidence of
        the job `name`."""
        return poll(what, check, lambda: self.evidence(name), timeout or self.timeout)

    def wait_for_state(
        self, name: str, state: str, reason: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            if status.get("state") == state and reason in (None, status.get("reason")):
                return status
            return None

        return self.wait_for(name, f"job {name}: state {state} reason {reason}", reached, timeout)

    def wait_for_event(
        self, name: str, reason: str, timeout: float | None = None
    ) -> client.CoreV1Event:
        """The job's Event of `reason`. The controller posts an Event after the status write it
        reports, so a test that has seen the status may be ahead of the Event."""

        def posted() -> client.CoreV1Event | None:
            return next(iter(self.events(name, reason=reason)), None)

        return self.wait_for(name, f"job {name}: event {reason}", posted, timeout)

    def wait_for_pods(
        self, name: str, count: int, phase: str | None = None, timeout: float | None = None
    ) -> list[client.V1Pod]:
        def enough() -> list[client.V1Pod] | None:
            pods = [p for p in self.pods(name) if phase is None or p.status.phase == phase]
            return pods if len(pods) == count else None

        return self.wait_for(name, f"job {name}: {count} pods {phase or ''}", enough, timeout)


class PodCreations:
    """Every pod UID ever seen per name in a namespace, from a watch of the test's own: a pod
    created twice shows as two UIDs."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.uids: dict[str, set[str]] = defaultdict(set)
        self._stopped = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(api_client, namespace), daemon=True)
        self._thread.start()

    def _run(self, api_client: client.ApiClient, namespace: str) -> None:
        core = client.CoreV1Api(api_client)
        while not self._stopped.is_set():  # a watch that ends is resumed: it must see every pod
            try:
                for event in self._watch.stream(
                    core.list_namespaced_pod, namespace, timeout_seconds=60
                ):
                    pod = event["object"]
                    self.uids[pod.metadata.name].add(pod.metadata.uid)
            except Exception:  # a cut stream: the next listing sees every pod again
                continue

    def twice(self) -> dict[str, set[str]]:
        """The names under which more than one pod was created."""
        return {name: uids for name, uids in self.uids.items() if len(uids) > 1}

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


def in_artifacts(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A file of that name in $UCLOUD_ARTIFACTS (kept after the run), else in a temporary
    folder."""
    folder = Path(os.environ.get("UCLOUD_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
